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

// -- issue 18, item 8: the SEG at once, the slice nearest a point, a window ----------------------

/** Axial slices 3 mm apart from z = 0, and a viewport over them; the layers in the grid; OHIF's commands. */
function setupStacks() {
  const imageIds = Array.from({ length: 10 }, (_, i) => `wadors:/studies/s/series/se-f/instances/1.${i}/frames/1`);
  const planes = new Map(imageIds.map((id, i) => [id, { imagePositionPatient: [0, 0, 3 * i], rowCosines: [1, 0, 0], columnCosines: [0, 1, 0] }]));
  const images = imageIds.map((imageId) => ({ imageId }));
  const displaySets: OhifDisplaySet[] = [
    { ...displaySet('ds-f', FOLLOW_UP_UID, 'se-f', 'P'), images },
    { ...displaySet('ds-f2', FOLLOW_UP_UID, 'se-f2', 'P'), images: [{ imageId: 'wadors:/other/1' }] },
    { displaySetInstanceUID: 'ds-seg', StudyInstanceUID: FOLLOW_UP_UID, SeriesInstanceUID: 'se-seg', Modality: 'SEG', SOPInstanceUID: '2.25.7', referencedDisplaySetInstanceUID: 'ds-f' },
  ];
  const displaySetService = Object.assign(new FakePubSub(), {
    EVENTS: { DISPLAY_SETS_ADDED: 'added', DISPLAY_SETS_CHANGED: 'changed' },
    getActiveDisplaySets: () => displaySets,
    getDisplaySetByUID: (uid: string) => displaySets.find((d) => d.displaySetInstanceUID === uid),
  });
  // the protocol hung another series of the study in the viewport
  const viewports = new Map([['right', { viewportId: 'right', displaySetInstanceUIDs: ['ds-f2'] }]]);
  const viewportGridService = Object.assign(new FakePubSub(), {
    EVENTS: { GRID_STATE_CHANGED: 'grid', VIEWPORTS_READY: 'ready' },
    getActiveViewportId: () => 'right',
    getState: () => ({ activeViewportId: 'right', viewports }),
  });
  const representations: string[] = [];
  const segmentationService = { getSegmentationRepresentations: vi.fn(() => representations.map((segmentationId) => ({ segmentationId }))) };
  const order: string[] = [];
  const slice = { setEnabled: vi.fn((on: boolean) => order.push(`slice sync ${on ? 'on' : 'off'}`)), id: 'oncoflowSliceSync' };
  const zoom = { setEnabled: vi.fn(), id: 'oncoflowZoomPanSync' };
  const syncGroupService = {
    getSynchronizersForViewport: () => [slice, zoom],
    getSynchronizerType: (s: unknown) => (s === slice ? 'imageSlice' : 'zoompan'),
  };
  let index = 0;
  let shownImageIds = ['wadors:/other/1'];
  // W 1 / L 1 in the header would be refused; the slice: background 0 and tissue 100..199
  const pixels = Uint16Array.from({ length: 400 }, (_, i) => (i < 200 ? 0 : 100 + (i % 100)));
  const viewport = {
    id: 'right',
    element: document.createElement('div') as HTMLDivElement,
    canvasToWorld: () => [0, 0, 0],
    getImageIds: () => shownImageIds,
    getCurrentImageId: () => shownImageIds[index],
    getCurrentImageIdIndex: () => index,
    setImageIdIndex: vi.fn(async (i: number) => {
      order.push(`slice ${i}`);
      index = i;
    }),
    getCornerstoneImage: () => ({ getPixelData: () => pixels, slope: 1, intercept: 0, preScale: { scaled: true } }),
    setProperties: vi.fn(),
    render: vi.fn(),
  };
  const commandsManager = {
    run: vi.fn((command: string, options?: Record<string, unknown>) => {
      if (command === 'setDisplaySetsForViewports') {
        // OHIF replaces the viewport a moment later
        setTimeout(() => {
          viewports.set('right', { viewportId: 'right', displaySetInstanceUIDs: ['ds-f'] });
          shownImageIds = imageIds;
          index = 0;
        }, 20);
      }
      if (command === 'addDisplaySetAsLayer') {
        const uid = String(options?.displaySetInstanceUID);
        setTimeout(() => {
          viewports.set('right', { viewportId: 'right', displaySetInstanceUIDs: ['ds-f', uid] });
          representations.push(uid);
        }, 20);
      }
      return undefined;
    }),
  };
  const metaData = {
    get: (type: string, imageId: string) =>
      type === 'imagePlaneModule' ? planes.get(imageId) : type === 'voiLutModule' ? { windowCenter: [1], windowWidth: [1] } : undefined,
  };
  const servicesManager = {
    services: { displaySetService, viewportGridService, cornerstoneViewportService: { getCornerstoneViewport: () => viewport }, syncGroupService, segmentationService },
  } as unknown as ServicesManager;
  const extensionManager = {
    getActiveDataSource: () => [],
    getModuleEntry: () => ({ exports: { getCornerstoneLibraries: () => ({ cornerstone: { metaData, utilities: {} } }) } }),
  };
  const bridge = createOhifViewerBridge({ servicesManager, extensionManager, commandsManager, search: () => '' });
  return { bridge, commandsManager, viewport, slice, zoom, order, representations };
}

describe('OHIF viewer bridge: SEG and lesion navigation', () => {
  it('puts the SEG’s own series in the viewport, then the SEG over it as a layer (OHIF’s prompt-free path)', async () => {
    const { bridge, commandsManager } = setupStacks();
    const shown = await bridge.showSegmentation('right', '2.25.7');
    expect(shown).toEqual({ viewportId: 'right', shown: true, message: 'SEG shown' });
    expect(commandsManager.run.mock.calls).toEqual([
      ['setDisplaySetsForViewports', { viewportsToUpdate: [{ viewportId: 'right', displaySetInstanceUIDs: ['ds-f'] }] }],
      ['addDisplaySetAsLayer', { viewportId: 'right', displaySetInstanceUID: 'ds-seg' }],
    ]);
    // shown already: nothing to do
    expect(await bridge.showSegmentation('right', '2.25.7')).toMatchObject({ shown: true });
    expect(commandsManager.run).toHaveBeenCalledTimes(2);
  });

  it('goes to the slice nearest the point with linked scrolling paused, and sets the window from that slice', async () => {
    const { bridge, viewport, slice, zoom, order } = setupStacks();
    await bridge.showSegmentation('right', '2.25.7');
    const [result] = await bridge.goTo([{ viewportId: 'right', positionMm: [50, -20, 13.9] }], { setWindow: true });
    expect(result).toMatchObject({ viewportId: 'right', sliceIndex: 5, sliceCount: 10, problem: '' });
    expect(result?.distanceMm).toBeCloseTo(1.1, 6);
    expect(order).toEqual(['slice sync off', 'slice 5', 'slice sync on']);
    expect(zoom.setEnabled).not.toHaveBeenCalled();
    expect(slice.setEnabled).toHaveBeenCalledTimes(2);
    // the header's W 1 / L 1 is refused: the slice's 1st–99th percentiles
    expect(result?.window?.source).toBe('percentiles');
    expect(viewport.setProperties).toHaveBeenCalledWith({ voiRange: { lower: result?.window?.lower, upper: result?.window?.upper } });
    expect(result?.window?.lower).toBe(0);
    expect(result?.window?.upper).toBeGreaterThan(190);
    // a lesion row later: no new window
    const [again] = await bridge.goTo([{ viewportId: 'right', positionMm: [0, 0, 27] }], { setWindow: false });
    expect(again).toMatchObject({ sliceIndex: 9, window: null, problem: '' });
    expect(viewport.setProperties).toHaveBeenCalledTimes(1);
  });

  it('says when the SEG is not in the viewer', async () => {
    const { bridge } = setupStacks();
    vi.useFakeTimers();
    try {
      const pending = bridge.showSegmentation('right', '9.9.9');
      await vi.advanceTimersByTimeAsync(60_000);
      expect(await pending).toMatchObject({ shown: false, message: expect.stringContaining('is not in the viewer') });
    } finally {
      vi.useRealTimers();
    }
  });
});
