// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest';
import { createOhifViewerBridge, patientIdFromDisplaySets } from '../src/ohif/ohifViewerBridge';
import type { OhifDataSource, OhifDisplaySet, ServicesManager } from '../src/ohif/types';
import { BASELINE_UID, FOLLOW_UP_UID } from './fixtures';

type Listener = (payload: unknown) => void;

class FakePubSub {
  listeners = new Map<string, Set<Listener>>();
  subscribe(event: string, callback: Listener) {
    const set = this.listeners.get(event) ?? new Set<Listener>();
    set.add(callback);
    this.listeners.set(event, set);
    return { unsubscribe: () => set.delete(callback) };
  }
  emit(event: string) {
    this.listeners.get(event)?.forEach((l) => l({}));
  }
}

function displaySet(uid: string, study: string, series: string, patientId?: string): OhifDisplaySet {
  return { displaySetInstanceUID: uid, StudyInstanceUID: study, SeriesInstanceUID: series, instances: [{ PatientID: patientId }] };
}

function setup() {
  const displaySets: OhifDisplaySet[] = [displaySet('ds-f', FOLLOW_UP_UID, 'se-f', 'ONC 001/A'), displaySet('ds-b', BASELINE_UID, 'se-b', 'ONC 001/A')];
  const displaySetService = Object.assign(new FakePubSub(), {
    EVENTS: { DISPLAY_SETS_ADDED: 'added', DISPLAY_SETS_CHANGED: 'changed' },
    getActiveDisplaySets: () => displaySets,
    getDisplaySetByUID: (uid: string) => displaySets.find((d) => d.displaySetInstanceUID === uid),
  });
  const viewports = new Map([
    ['left', { viewportId: 'left', displaySetInstanceUIDs: ['ds-b'] }],
    ['right', { viewportId: 'right', displaySetInstanceUIDs: ['ds-f'] }],
  ]);
  const viewportGridService = Object.assign(new FakePubSub(), {
    EVENTS: { GRID_STATE_CHANGED: 'grid', VIEWPORTS_READY: 'ready' },
    getActiveViewportId: () => 'right',
    getState: () => ({ activeViewportId: 'right', viewports }),
  });
  const elements = new Map([...viewports.keys()].map((id) => [id, document.body.appendChild(document.createElement('div'))]));
  for (const el of elements.values()) {
    el.getBoundingClientRect = () => ({ left: 0, top: 0, right: 100, bottom: 100, width: 100, height: 100, x: 0, y: 0, toJSON: () => ({}) });
  }
  const canvasToWorld = vi.fn((p: [number, number]) => [p[0] * 0.5, p[1] * 0.5, 42]);
  const cornerstoneViewportService = {
    getCornerstoneViewport: (id: string) => (elements.has(id) ? { id, element: elements.get(id) as HTMLDivElement, canvasToWorld } : null),
  };
  const hangingProtocolService = { getViewportsRequireUpdate: vi.fn(() => [{ viewportId: 'right', displaySetInstanceUIDs: ['ds-seg'] }]) };
  const servicesManager = {
    services: { displaySetService, viewportGridService, cornerstoneViewportService, hangingProtocolService },
  } as unknown as ServicesManager;
  const deleted: string[] = [];
  const dataSource: OhifDataSource = {
    getConfig: () => ({ name: 'orthanc' }),
    deleteStudyMetadataPromise: (key) => deleted.push(key),
    retrieve: {
      series: {
        metadata: vi.fn(async () => {
          // OHIF's mode route turns the new instances into a display set
          setTimeout(() => {
            displaySets.push(displaySet('ds-seg', FOLLOW_UP_UID, 'se-seg'));
            displaySetService.emit('added');
          }, 5);
          return [];
        }),
      },
    },
    query: { studies: { search: vi.fn(async () => [{ studyInstanceUid: '9.9', mrn: 'QIDO-PID' }]) } },
  };
  const provider = { add: vi.fn() };
  const extensionManager = {
    getActiveDataSource: () => [dataSource],
    getModuleEntry: (id: string) =>
      id === '@ohif/extension-cornerstone.utilityModule.common'
        ? { exports: { getCornerstoneLibraries: () => ({ cornerstone: { utilities: { spatialRegistrationMetadataProvider: provider } } }) } }
        : undefined,
  };
  const commandsManager = { run: vi.fn() };
  const bridge = createOhifViewerBridge({
    servicesManager,
    extensionManager,
    commandsManager,
    search: () => `?StudyInstanceUIDs=${FOLLOW_UP_UID},${BASELINE_UID}`,
  });
  return { bridge, elements, canvasToWorld, dataSource, deleted, provider, commandsManager, hangingProtocolService, viewportGridService };
}

describe('OHIF viewer bridge', () => {
  it('reads the studies from the URL and the PatientID from loaded metadata, else QIDO', async () => {
    const { bridge } = setup();
    expect(bridge.studyInstanceUids()).toEqual([FOLLOW_UP_UID, BASELINE_UID]);
    expect(await bridge.patientId(FOLLOW_UP_UID)).toBe('ONC 001/A');
    expect(await bridge.patientId('9.9')).toBe('QIDO-PID');
    expect(patientIdFromDisplaySets([], '1.2')).toBeNull();
  });

  it('maps viewports to their studies', () => {
    const { bridge } = setup();
    expect(bridge.viewportStudies()).toEqual([
      { viewportId: 'left', studyInstanceUid: BASELINE_UID },
      { viewportId: 'right', studyInstanceUid: FOLLOW_UP_UID },
    ]);
  });

  it('turns a click into patient mm through canvasToWorld, with the viewport’s study', () => {
    const { bridge, elements, canvasToWorld } = setup();
    const points: unknown[] = [];
    const stop = bridge.capturePoints((p) => points.push(p), (m) => points.push(m));
    const left = elements.get('left') as HTMLElement;
    expect(left.style.cursor).toBe('crosshair');
    left.dispatchEvent(new MouseEvent('mousedown', { clientX: 40, clientY: 60, button: 0 }));
    left.dispatchEvent(new MouseEvent('click', { clientX: 40, clientY: 60, button: 0 }));
    expect(canvasToWorld).toHaveBeenCalledWith([40, 60]);
    expect(points).toEqual([{ viewportId: 'left', studyInstanceUid: BASELINE_UID, positionMm: [20, 30, 42], positive: true }]);
    stop();
    expect(left.style.cursor).toBe('');
  });

  it('fetches the new series again (both cache keys cleared) and shows it like a thumbnail double click', async () => {
    const { bridge, dataSource, deleted, commandsManager, hangingProtocolService } = setup();
    const shown = await bridge.showNewSeries(FOLLOW_UP_UID, 'se-seg', 'right');
    expect(deleted).toEqual([FOLLOW_UP_UID, `orthanc:${FOLLOW_UP_UID}`, FOLLOW_UP_UID, `orthanc:${FOLLOW_UP_UID}`]);
    expect(dataSource.retrieve.series.metadata).toHaveBeenCalledWith({
      StudyInstanceUID: FOLLOW_UP_UID,
      filters: { seriesInstanceUID: ['se-seg'] },
    });
    expect(hangingProtocolService.getViewportsRequireUpdate).toHaveBeenCalledWith('right', 'ds-seg', false);
    expect(commandsManager.run).toHaveBeenCalledWith('setDisplaySetsForViewports', {
      viewportsToUpdate: [{ viewportId: 'right', displaySetInstanceUIDs: ['ds-seg'] }],
    });
    expect(shown).toMatchObject({ found: true, displayed: true });
  });

  it('registers viewport links with cornerstone’s spatial registration provider', () => {
    const { bridge, provider } = setup();
    const matrix = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 4, 0, -2, 1];
    expect(bridge.registerViewportLinks([{ targetViewportId: 'left', sourceViewportId: 'right', matrixColumnMajor: matrix, description: '' }])).toBe(1);
    expect(provider.add).toHaveBeenCalledWith(['left', 'right'], Float32Array.from(matrix));
  });
});
