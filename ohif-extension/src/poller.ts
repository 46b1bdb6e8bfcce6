/**
 * Repeated loading while a condition holds: the panel polls a study's job every 2 s while it
 * is queued or running, and stops once it is done or failed. Timers are injectable for tests.
 */

export interface PollTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const browserTimers: PollTimers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface PollOptions<T> {
  load: () => Promise<T>;
  onResult: (result: T) => void;
  onError: (error: unknown) => void;
  /** Whether to load again after this result. */
  shouldContinue: (result: T) => boolean;
  intervalMs: number;
  /** Consecutive failures after which polling stops (a network error does not end it at once). */
  maxConsecutiveErrors?: number;
  timers?: PollTimers;
}

export const JOB_POLL_INTERVAL_MS = 2000;

/** Loads now, then every `intervalMs` while `shouldContinue`; returns a function that stops it. */
export function startPolling<T>(options: PollOptions<T>): () => void {
  const timers = options.timers ?? browserTimers;
  const maxErrors = options.maxConsecutiveErrors ?? 5;
  let stopped = false;
  let handle: unknown = null;
  let errors = 0;

  const schedule = (): void => {
    handle = timers.setTimeout(() => {
      handle = null;
      void tick();
    }, options.intervalMs);
  };

  const tick = async (): Promise<void> => {
    let result: T;
    try {
      result = await options.load();
    } catch (error) {
      if (stopped) {
        return;
      }
      errors += 1;
      options.onError(error);
      if (errors < maxErrors) {
        schedule();
      }
      return;
    }
    if (stopped) {
      return;
    }
    errors = 0;
    options.onResult(result);
    if (options.shouldContinue(result)) {
      schedule();
    }
  };

  void tick();
  return () => {
    stopped = true;
    if (handle !== null) {
      timers.clearTimeout(handle);
      handle = null;
    }
  };
}
