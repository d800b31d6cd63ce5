// The live transcript: streamed pieces of one role are joined into one bubble until the role
// changes or the turn completes.
import { h } from './dom.js';

const SPEAKER = { assistant: 'Assistant', patient: 'You' };

export class TranscriptView {
  constructor(container) {
    this.container = container;
    this.current = null;
    this.placeholder = container.querySelector('.placeholder');
  }

  append(role, text) {
    if (!text) return;
    const stick = this.#atBottom();
    if (!this.current || this.current.dataset.role !== role) this.#open(role);
    const body = this.current.querySelector('.turn__text');
    body.textContent = body.textContent ? body.textContent + text : text.trimStart();
    if (stick) this.#follow();
  }

  endTurn({ interrupted = false } = {}) {
    if (this.current && interrupted) {
      this.current.classList.add('turn--interrupted');
      this.current.append(h('span', { className: 'turn__note' }, 'interrupted'));
    }
    this.current = null;
  }

  note(text) {
    const stick = this.#atBottom();
    this.endTurn();
    this.placeholder?.remove();
    this.container.append(h('p', { className: 'transcript__note' }, text));
    if (stick) this.#follow();
  }

  // A turn the drop cut off, completed from the server's history.
  complete(index, text) {
    const turn = this.container.querySelectorAll('.turn')[index];
    if (turn) turn.querySelector('.turn__text').textContent = text;
  }

  clear() {
    this.current = null;
    this.container.replaceChildren(...(this.placeholder ? [this.placeholder] : []));
  }

  turns() {
    return [...this.container.querySelectorAll('.turn')].map((turn) => ({
      role: turn.dataset.role,
      text: turn.querySelector('.turn__text').textContent,
    }));
  }

  #open(role) {
    this.placeholder?.remove();
    this.current = h(
      'div',
      { className: `turn turn--${role}`, 'data-role': role },
      h('span', { className: 'turn__who' }, SPEAKER[role] ?? role),
      h('p', { className: 'turn__text' }),
    );
    this.container.append(this.current);
  }

  // Keep the newest words in view, unless the patient has scrolled up to reread something.
  #atBottom() {
    const box = this.container;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  }

  #follow() {
    this.container.scrollTop = this.container.scrollHeight;
  }
}

export function renderTurns(container, turns) {
  container.replaceChildren(
    ...turns.map(({ role, text }) =>
      h(
        'div',
        { className: `turn turn--${role}`, 'data-role': role },
        h('span', { className: 'turn__who' }, SPEAKER[role] ?? role),
        h('p', { className: 'turn__text' }, text),
      ),
    ),
  );
}
