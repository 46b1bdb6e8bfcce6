// @vitest-environment jsdom
/// <reference types="node" />
import { createRequire } from 'node:module';
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import { afterEach, describe, expect, it } from 'vitest';
import { createIslandComponent, hasIsland } from '../src/island';

type ReactModule = typeof React;
type ReactDomClient = typeof import('react-dom/client');

/** Lets both React instances' schedulers run (no act(): one of them is a foreign instance). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

const lifecycle = { mounts: 0, unmounts: 0 };

/** Our content: hooks, state and an effect, as the real panel has. */
function Counter({ label }: { label: string }) {
  const [clicks, setClicks] = React.useState(0);
  React.useEffect(() => {
    lifecycle.mounts += 1;
    return () => {
      lifecycle.unmounts += 1;
    };
  }, []);
  return (
    <button type="button" data-testid="counter" onClick={() => setClicks((c) => c + 1)}>
      {label}:{clicks}
    </button>
  );
}

const Host = createIslandComponent((props: { label: string }) => <Counter label={props.label} />);

/** A second, independent copy of react + react-dom, standing in for the one inside OHIF's bundle. */
function loadForeignReact(): { ForeignReact: ReactModule; foreignClient: ReactDomClient } {
  const require = createRequire(import.meta.url);
  expect((require('react') as ReactModule).createElement).toBe(React.createElement); // the island's copy
  for (const key of Object.keys(require.cache)) {
    if (/[\\/]node_modules[\\/](react|react-dom|scheduler)[\\/]/.test(key)) {
      delete require.cache[key];
    }
  }
  const ForeignReact = require('react') as ReactModule;
  const foreignClient = require('react-dom/client') as ReactDomClient;
  expect(ForeignReact.createElement).not.toBe(React.createElement);
  return { ForeignReact, foreignClient };
}

afterEach(() => {
  document.body.innerHTML = '';
  lifecycle.mounts = 0;
  lifecycle.unmounts = 0;
});

function counterText(container: HTMLElement): string | null {
  return container.querySelector('[data-testid="counter"]')?.textContent ?? null;
}

describe('island', () => {
  it('mounts our tree inside the host div, keeps it across host re-renders, unmounts with the host', async () => {
    const container = document.body.appendChild(document.createElement('div'));
    const outer = createRoot(container);
    outer.render(<Host label="a" />);
    await settle();
    const hostDiv = container.querySelector('[data-oncoflow-island]') as HTMLElement;
    expect(hostDiv).not.toBeNull();
    expect(counterText(container)).toBe('a:0');
    expect(hasIsland(hostDiv)).toBe(true);

    (container.querySelector('[data-testid="counter"]') as HTMLButtonElement).click();
    await settle();
    expect(counterText(container)).toBe('a:1');

    outer.render(<Host label="b" />); // a new ref callback: the island must survive
    await settle();
    expect(counterText(container)).toBe('b:1');
    expect(lifecycle).toEqual({ mounts: 1, unmounts: 0 });

    outer.render(<div>other panel</div>);
    await settle();
    expect(lifecycle).toEqual({ mounts: 1, unmounts: 1 });
    expect(hasIsland(hostDiv)).toBe(false);
    expect(container.textContent).toBe('other panel');
    outer.unmount();
  });

  it('is rendered by a foreign React instance (as in OHIF) with hooks working in our tree', async () => {
    const { ForeignReact, foreignClient } = loadForeignReact();
    const container = document.body.appendChild(document.createElement('div'));
    const foreignRoot = foreignClient.createRoot(container);

    // OHIF's side panel renders `React.createElement(tab.content, { key })` with its own React.
    foreignRoot.render(ForeignReact.createElement(Host, { label: 'ohif', key: 0 }));
    await settle();
    expect(counterText(container)).toBe('ohif:0');

    (container.querySelector('[data-testid="counter"]') as HTMLButtonElement).click();
    await settle();
    expect(counterText(container)).toBe('ohif:1');

    foreignRoot.render(ForeignReact.createElement(Host, { label: 'again', key: 0 }));
    await settle();
    expect(counterText(container)).toBe('again:1');
    expect(lifecycle).toEqual({ mounts: 1, unmounts: 0 });

    foreignRoot.unmount();
    await settle();
    expect(lifecycle).toEqual({ mounts: 1, unmounts: 1 });
  });
});
