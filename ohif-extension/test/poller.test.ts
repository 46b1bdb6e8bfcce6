import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startPolling } from '../src/poller';

describe('startPolling', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('loads every interval while the job runs and stops when it is done', async () => {
    const states = ['queued', 'running', 'running', 'done'];
    const load = vi.fn(async () => states.shift() ?? 'done');
    const seen: string[] = [];
    startPolling({ load, onResult: (s) => seen.push(s), onError: () => undefined, shouldContinue: (s) => s === 'queued' || s === 'running', intervalMs: 2000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(seen).toEqual(['queued']);
    await vi.advanceTimersByTimeAsync(1999);
    expect(load).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual(['queued', 'running']);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(seen).toEqual(['queued', 'running', 'running', 'done']);
    expect(load).toHaveBeenCalledTimes(4);
  });

  it('stops when asked, even with a load in flight', async () => {
    let resolve: (value: string) => void = () => undefined;
    const load = vi.fn(() => new Promise<string>((r) => (resolve = r)));
    const onResult = vi.fn();
    const stop = startPolling({ load, onResult, onError: () => undefined, shouldContinue: () => true, intervalMs: 2000 });
    stop();
    resolve('running');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(onResult).not.toHaveBeenCalled();
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('retries after errors, then gives up', async () => {
    const load = vi.fn(async () => {
      throw new Error('network down');
    });
    const onError = vi.fn();
    startPolling({ load, onResult: () => undefined, onError, shouldContinue: () => true, intervalMs: 1000, maxConsecutiveErrors: 3 });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(onError).toHaveBeenCalledTimes(3);
  });
});
