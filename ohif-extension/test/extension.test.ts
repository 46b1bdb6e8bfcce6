// @vitest-environment jsdom
import { createRoot } from 'react-dom/client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import extension from '../src/extension';
import { baselineFollowUpProtocol, BASELINE_STUDY_INDEX, FOLLOW_UP_STUDY_INDEX } from '../src/hangingProtocol';
import type { ExtensionModuleArgs } from '../src/ohif/types';

function moduleArgs(authorizationHeader?: () => Record<string, string> | undefined): ExtensionModuleArgs {
  const pubSub = { EVENTS: {}, subscribe: () => ({ unsubscribe: () => undefined }) };
  return {
    servicesManager: {
      services: {
        displaySetService: { ...pubSub, getActiveDisplaySets: () => [], getDisplaySetByUID: () => undefined },
        viewportGridService: { ...pubSub, getActiveViewportId: () => null, getState: () => ({ viewports: new Map() }) },
        ...(authorizationHeader ? { userAuthenticationService: { getAuthorizationHeader: authorizationHeader } } : {}),
      },
    },
    commandsManager: { run: vi.fn() },
    extensionManager: { getActiveDataSource: () => [], getModuleEntry: () => undefined },
  };
}

describe('OncoFlow extension', () => {
  it('has the id the panel reference uses and registers its styles', () => {
    expect(extension.id).toBe('@oncoflow/extension');
    extension.preRegistration();
    expect(document.getElementById('oncoflow-panel-styles')).not.toBeNull();
  });

  it('offers the oncoflow panel as a React component', () => {
    const [panel] = extension.getPanelModule(moduleArgs());
    expect(panel).toMatchObject({ name: 'oncoflow', label: 'OncoFlow', iconLabel: 'OncoFlow' });
    expect(typeof panel?.component).toBe('function');
    const element = panel!.component({});
    expect(element.type).toBe('div');
    expect((element as unknown as { $$typeof: symbol }).$$typeof).toBe(Symbol.for('react.element'));
  });

  describe('the panel’s requests', () => {
    const STUDY = '1.2.826.0.1.3680043.8.498.77';
    afterEach(() => {
      vi.unstubAllGlobals();
      window.history.replaceState(null, '', '/');
      document.body.innerHTML = '';
    });

    /** Renders the panel as OHIF would (its host element) and answers what it fetches. */
    async function panelRequests(authorizationHeader?: () => Record<string, string> | undefined) {
      window.history.replaceState(null, '', `/ohif/oncoflow-review?StudyInstanceUIDs=${STUDY}`);
      const fetch = vi.fn(async (_url: string, _init?: RequestInit) =>
        new Response(JSON.stringify({ error: 'no OncoFlow job' }), { status: 404, headers: { 'Content-Type': 'application/json' } }),
      );
      vi.stubGlobal('fetch', fetch);
      const [panel] = extension.getPanelModule(moduleArgs(authorizationHeader));
      const container = document.body.appendChild(document.createElement('div'));
      const root = createRoot(container);
      // OHIF's React renders the host, the island renders the panel in its own root (no act(): as in island.test)
      root.render(panel!.component({}));
      const answered = () => container.querySelector('[data-testid="oncoflow-job-state"]')?.textContent === 'No OncoFlow job for this study';
      for (let i = 0; i < 100 && !answered(); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(answered()).toBe(true);
      root.unmount();
      return fetch.mock.calls.map(([url, init]) => [url, (init?.headers ?? {}) as Record<string, string>] as const);
    }

    it('carry OHIF’s Authorization header when the viewer signed in', async () => {
      const requests = await panelRequests(() => ({ Authorization: 'Bearer ohif-token' }));
      expect(requests.map(([url]) => url)).toContain(`/oncoflow/studies/${STUDY}`);
      for (const [url, headers] of requests) {
        expect(headers.Authorization, url).toBe('Bearer ohif-token');
      }
    });

    it('carry none without a signed-in user or without the service', async () => {
      for (const requests of [await panelRequests(() => undefined), await panelRequests()]) {
        expect(requests.map(([url]) => url)).toContain(`/oncoflow/studies/${STUDY}`);
        for (const [, headers] of requests) {
          expect(headers).not.toHaveProperty('Authorization');
        }
      }
    });
  });

  it('registers the baseline | follow-up protocol', () => {
    expect(extension.getHangingProtocolModule()).toEqual([{ name: '@oncoflow/hpBaselineFollowUp', protocol: baselineFollowUpProtocol }]);
  });
});

describe('baseline | follow-up hanging protocol', () => {
  const stage = baselineFollowUpProtocol.stages[0]!;

  it('matches only with a second (prior) study', () => {
    expect(baselineFollowUpProtocol.protocolMatchingRules).toEqual([
      expect.objectContaining({ attribute: 'StudyInstanceUID', from: 'prior', required: true, constraint: { notNull: true } }),
    ]);
  });

  it('puts the baseline (URL index 1) left and the follow-up (index 0) right', () => {
    expect(stage.viewportStructure.properties).toEqual({ rows: 1, columns: 2 });
    const [left, right] = stage.viewports;
    const selectors = baselineFollowUpProtocol.displaySetSelectors;
    const studyIndexOf = (id: string) =>
      selectors[id as keyof typeof selectors].studyMatchingRules[0]?.constraint.equals.value;
    expect(studyIndexOf(left!.displaySets[0]!.id)).toBe(BASELINE_STUDY_INDEX);
    expect(studyIndexOf(right!.displaySets[0]!.id)).toBe(FOLLOW_UP_STUDY_INDEX);
    expect([BASELINE_STUDY_INDEX, FOLLOW_UP_STUDY_INDEX]).toEqual([1, 0]);
  });

  it('links slices and zoom/pan of both viewports', () => {
    for (const viewport of stage.viewports) {
      const types = viewport.viewportOptions.syncGroups.map((g) => `${g.type}:${g.id}`);
      expect(types).toEqual(['imageSlice:oncoflowSliceSync', 'zoompan:oncoflowZoomPanSync', 'hydrateseg:sameFORId']);
    }
  });
});
