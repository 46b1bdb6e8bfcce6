// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest';
import extension from '../src/extension';
import { baselineFollowUpProtocol, BASELINE_STUDY_INDEX, FOLLOW_UP_STUDY_INDEX } from '../src/hangingProtocol';
import type { ExtensionModuleArgs } from '../src/ohif/types';

function moduleArgs(): ExtensionModuleArgs {
  const pubSub = { EVENTS: {}, subscribe: () => ({ unsubscribe: () => undefined }) };
  return {
    servicesManager: {
      services: {
        displaySetService: { ...pubSub, getActiveDisplaySets: () => [], getDisplaySetByUID: () => undefined },
        viewportGridService: { ...pubSub, getActiveViewportId: () => null, getState: () => ({ viewports: new Map() }) },
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
