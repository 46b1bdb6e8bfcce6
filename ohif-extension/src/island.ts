/**
 * Rendering our React tree inside OHIF's React tree: an "island".
 *
 * A module OHIF loads with `import(url)` cannot import OHIF's React (it is bundled inside
 * OHIF's app chunk and not exposed), and hooks only work with the React instance that
 * renders the component. So OHIF gets a *host* component that is hook-free: it returns a
 * plain `<div ref={…}>` made by React's real `createElement` (react@18.3.1, the version
 * OHIF 3.13.2 bundles, so OHIF's React renders the element like one of its own). The ref
 * callback creates a react-dom root on that div and renders our tree with our React; the
 * root is unmounted when OHIF removes the div.
 *
 * OHIF re-renders the host with a new ref callback each time: React then calls the old ref
 * with null and the new one with the same node in the same commit. The unmount is therefore
 * deferred to a microtask and cancelled when the node comes back, so our tree (its state,
 * its polling) survives OHIF's re-renders.
 */

import { createElement, type ReactElement, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';

interface IslandRoot {
  root: Root;
  unmountScheduled: boolean;
}

const roots = new WeakMap<Element, IslandRoot>();

export interface IslandOptions {
  /** Class of the host div (OHIF sizes the panel; the host fills it). */
  className?: string;
  /** The host component's name in React dev tools and error messages. */
  displayName?: string;
}

function mountOrUpdate(node: HTMLElement, content: ReactNode): void {
  const existing = roots.get(node);
  if (existing) {
    existing.unmountScheduled = false;
    existing.root.render(content);
    return;
  }
  const root = createRoot(node);
  roots.set(node, { root, unmountScheduled: false });
  root.render(content);
}

function scheduleUnmount(node: HTMLElement): void {
  const island = roots.get(node);
  if (!island) {
    return;
  }
  island.unmountScheduled = true;
  queueMicrotask(() => {
    if (island.unmountScheduled && roots.get(node) === island) {
      roots.delete(node);
      island.root.unmount();
    }
  });
}

/** Whether an island is mounted on `node` (for tests and diagnostics). */
export function hasIsland(node: Element): boolean {
  const island = roots.get(node);
  return !!island && !island.unmountScheduled;
}

/**
 * A hook-free component for OHIF that renders `renderContent()` with our React in an island.
 * `renderContent` is called on every OHIF render of the host and receives the host's props.
 */
export function createIslandComponent<P extends object>(
  renderContent: (props: P) => ReactNode,
  options: IslandOptions = {},
): (props: P) => ReactElement {
  function IslandHost(props: P): ReactElement {
    let attached: HTMLElement | null = null;
    const ref = (node: HTMLElement | null): void => {
      if (node) {
        attached = node;
        mountOrUpdate(node, renderContent(props));
      } else if (attached) {
        scheduleUnmount(attached);
        attached = null;
      }
    };
    return createElement('div', {
      ref,
      className: options.className,
      style: { height: '100%', overflow: 'auto' },
      'data-oncoflow-island': '',
    });
  }
  Object.defineProperty(IslandHost, 'name', { value: options.displayName ?? 'OncoFlowIslandHost' });
  return IslandHost;
}
