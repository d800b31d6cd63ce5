// One intake: the record by section with its warnings and in-place corrections, the transcript,
// and the version history.

import { h } from './dom.js';
import { ROLES, SECTIONS, TEXT } from './wording.js';

function label(path) {
  return path.reduce((text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${key}` : key), '');
}

function leaves(value, path) {
  if (Array.isArray(value)) return value.flatMap((item, index) => leaves(item, [...path, index]));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => leaves(item, [...path, key]));
  }
  return [[path, value]];
}

function shown(value) {
  if (value === null || value === undefined || value === '') return '—';
  return String(value);
}

// RFC 7396 replaces arrays whole: the patch carries the whole top-level member, one value changed.
export function patchFor(record, path, value) {
  const [top, ...rest] = path;
  if (!rest.length) return { [top]: value };
  const copy = structuredClone(record[top]);
  let node = copy;
  for (const key of rest.slice(0, -1)) node = node[key];
  node[rest[rest.length - 1]] = value;
  return { [top]: copy };
}

function parsed(text, original) {
  if (typeof original === 'boolean') return text.trim().toLowerCase() === 'true';
  if (typeof original === 'number') return Number(text);
  return text;
}

export class IntakeView {
  constructor(elements, { onCorrect }) {
    this.el = elements;
    this.onCorrect = onCorrect;
    this.intake = null;
    this.editing = null;
  }

  render(intake) {
    this.intake = intake;
    this.renderRecord();
    this.renderTranscript();
    this.renderVersions();
  }

  renderRecord() {
    const { record, warnings } = this.intake;
    if (!record) {
      this.el.record.replaceChildren(h('p', { className: 'hint' }, TEXT.noRecord));
      return;
    }
    const sections = Object.keys(SECTIONS).map((key) => {
      const rows = leaves(record[key] ?? null, [key]).map(([path, value]) => this.row(path, value, warnings));
      return h('section', { className: 'record-section', 'data-section': key },
        h('h4', {}, SECTIONS[key]), h('dl', {}, rows.flat()));
    });
    this.el.record.replaceChildren(...sections);
  }

  row(path, value, warnings) {
    const name = label(path);
    const warning = warnings.find((w) => w.startsWith(`${name}:`));
    const term = h('dt', {}, name.split('.').slice(1).join('.') || SECTIONS[path[0]]);
    const editable = path.length > 1 || typeof value !== 'object' || value === null;
    const edit = editable
      ? h('button', { type: 'button', className: 'btn btn--small', 'data-testid': 'edit-field', 'data-path': name,
          'aria-label': `${TEXT.edit} ${name}` }, TEXT.edit)
      : null;
    const detail = h('dd', { 'data-path': name },
      h('span', { className: 'value' }, shown(value)),
      warning ? h('span', { className: 'warning', role: 'note' }, warning) : null,
      edit);
    edit?.addEventListener('click', () => this.openEditor(detail, path, value));
    return [term, detail];
  }

  openEditor(cell, path, value) {
    const name = label(path);
    const id = `edit-${name.replace(/[^a-z0-9]/gi, '-')}`;
    const input = h('input', { id, value: value ?? '', 'data-testid': 'edit-value' });
    const reason = h('input', { id: `${id}-reason`, required: true, 'data-testid': 'edit-reason' });
    const form = h('form', { className: 'editor' },
      h('label', { for: id }, TEXT.editLabel(name)), input,
      h('label', { for: `${id}-reason` }, TEXT.reasonLabel), reason,
      h('div', { className: 'actions' },
        h('button', { type: 'submit', className: 'btn btn--primary btn--small', 'data-testid': 'save-edit' }, TEXT.save),
        h('button', { type: 'button', className: 'btn btn--small', 'data-action': 'cancel' }, TEXT.cancel)));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const patch = patchFor(this.intake.record, path, parsed(input.value, value));
      this.onCorrect(patch, reason.value.trim());
    });
    form.querySelector('[data-action="cancel"]').addEventListener('click', () => this.renderRecord());
    cell.replaceChildren(form);
    input.focus();
  }

  renderTranscript() {
    this.el.transcript.replaceChildren(
      ...this.intake.transcript.map((turn) =>
        h('li', { className: `turn turn--${turn.role}`, 'data-role': turn.role },
          h('span', { className: 'turn__role' }, ROLES[turn.role] ?? turn.role),
          h('span', { className: 'turn__text' }, turn.text),
          turn.interrupted ? h('span', { className: 'hint' }, ` ${TEXT.interrupted}`) : null)),
    );
  }

  renderVersions() {
    this.el.versions.replaceChildren(
      ...[...this.intake.versions].reverse().map((v) =>
        h('li', { 'data-version': v.version, 'data-author': v.author ?? '' },
          h('strong', {}, TEXT.version(v)), ` · ${new Date(v.created_at).toLocaleString()} · ${TEXT.versionBy(v)}`)),
    );
  }
}
