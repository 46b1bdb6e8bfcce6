// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest';
import { captureClicks } from '../src/clickCapture';

function element(): HTMLElement {
  const el = document.body.appendChild(document.createElement('div'));
  el.getBoundingClientRect = () => ({ left: 100, top: 50, right: 612, bottom: 562, width: 512, height: 512, x: 100, y: 50, toJSON: () => ({}) });
  return el;
}

function press(el: HTMLElement, down: [number, number], up: [number, number], init: MouseEventInit = {}) {
  el.dispatchEvent(new MouseEvent('mousedown', { clientX: down[0], clientY: down[1], button: 0, bubbles: true, ...init }));
  el.dispatchEvent(new MouseEvent('click', { clientX: up[0], clientY: up[1], button: 0, bubbles: true, ...init }));
}

describe('captureClicks', () => {
  it('reports a click in canvas coordinates (CSS px from the element corner)', () => {
    const el = element();
    const onClick = vi.fn();
    captureClicks(el, onClick);
    press(el, [356, 306], [357, 306]);
    expect(onClick).toHaveBeenCalledWith({ canvasPoint: [257, 256], shiftKey: false });
  });

  it('ignores drags (window/level) and other buttons, reads Shift', () => {
    const el = element();
    const onClick = vi.fn();
    captureClicks(el, onClick);
    press(el, [200, 200], [260, 230]);
    el.dispatchEvent(new MouseEvent('mousedown', { clientX: 200, clientY: 200, button: 2 }));
    el.dispatchEvent(new MouseEvent('click', { clientX: 200, clientY: 200, button: 2 }));
    expect(onClick).not.toHaveBeenCalled();
    press(el, [200, 200], [200, 200], { shiftKey: true });
    expect(onClick).toHaveBeenCalledWith({ canvasPoint: [100, 150], shiftKey: true });
  });

  it('reads the press from pointerdown when the mousedown is suppressed (cornerstone3D cancels pointerdown)', () => {
    const el = element();
    const onClick = vi.fn();
    captureClicks(el, onClick);
    el.dispatchEvent(new MouseEvent('pointerdown', { clientX: 300, clientY: 250, button: 0 }));
    el.dispatchEvent(new MouseEvent('click', { clientX: 300, clientY: 250, button: 0 }));
    expect(onClick).toHaveBeenCalledWith({ canvasPoint: [200, 200], shiftKey: false });
    el.dispatchEvent(new MouseEvent('pointerdown', { clientX: 300, clientY: 250, button: 0 }));
    el.dispatchEvent(new MouseEvent('click', { clientX: 340, clientY: 250, button: 0 }));
    expect(onClick).toHaveBeenCalledTimes(1);
  });

  it('stops listening', () => {
    const el = element();
    const onClick = vi.fn();
    captureClicks(el, onClick)();
    press(el, [200, 200], [200, 200]);
    expect(onClick).not.toHaveBeenCalled();
  });
});
