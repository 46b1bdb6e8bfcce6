/**
 * Clicks on a viewport element, told apart from drags (a primary-button drag is window/level
 * in OHIF): a click counts when the pointer moved less than `maxMovePx` between press and
 * release. Listens in the capture phase so cornerstone's own handlers cannot hide it.
 *
 * The press is read from `pointerdown`: cornerstone3D cancels `pointerdown`, and a cancelled
 * pointerdown suppresses the compatibility `mousedown` (seen in OHIF 3.13.2 in Chromium; only
 * `click` still follows). `mousedown` is kept for environments without pointer events.
 */

export interface CanvasClick {
  /** CSS pixels from the element's top-left corner (cornerstone3D's canvas coordinates). */
  canvasPoint: [number, number];
  shiftKey: boolean;
}

export function captureClicks(
  element: HTMLElement,
  onClick: (click: CanvasClick) => void,
  maxMovePx = 4,
): () => void {
  let pressedAt: { x: number; y: number } | null = null;

  const onPress = (event: MouseEvent): void => {
    pressedAt = event.button === 0 ? { x: event.clientX, y: event.clientY } : null;
  };
  const onMouseClick = (event: MouseEvent): void => {
    if (event.button !== 0 || !pressedAt) {
      return;
    }
    const moved = Math.hypot(event.clientX - pressedAt.x, event.clientY - pressedAt.y);
    pressedAt = null;
    if (moved > maxMovePx) {
      return;
    }
    const rect = element.getBoundingClientRect();
    onClick({ canvasPoint: [event.clientX - rect.left, event.clientY - rect.top], shiftKey: event.shiftKey });
  };

  const pressEvents = ['pointerdown', 'mousedown'] as const;
  pressEvents.forEach((type) => element.addEventListener(type, onPress, true));
  element.addEventListener('click', onMouseClick, true);
  return () => {
    pressEvents.forEach((type) => element.removeEventListener(type, onPress, true));
    element.removeEventListener('click', onMouseClick, true);
  };
}
