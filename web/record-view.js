// The intake record (MedicalIntake in schemas.py) as the patient sees it: one section per
// topic, each filled in as `extracted_data` arrives, a life-threatening allergy called out.
import { h } from './dom.js';

const SECTIONS = [
  ['patient', 'About you', (r) => r.patient_info, renderPatient],
  ['complaints', 'Reason for visit', (r) => r.present_illness, renderComplaints],
  ['medications', 'Medications', (r) => r.medications, renderMedications],
  ['allergies', 'Allergies', (r) => r.allergies, renderAllergies],
  ['history', 'Medical history', (r) => [r.past_medical_history, r.family_history], renderHistory],
  ['social', 'Lifestyle', (r) => r.social_history, renderSocial],
];

export function isLifeThreatening(allergy) {
  const severity = (allergy.severity ?? '').toLowerCase().replace(/[\s_]+/g, '-');
  return severity === 'life-threatening' || allergy.requires_emergency_treatment === true;
}

export class RecordView {
  // highlight: briefly mark sections that change, for a record that fills in live.
  // empty: what a section without data says (a live form has not got there yet).
  constructor(container, { highlight = true, empty = 'Not discussed yet' } = {}) {
    this.container = container;
    this.highlight = highlight;
    this.empty = empty;
    this.clear();
  }

  clear() {
    this.alert = h('div', { className: 'critical-alert', 'data-testid': 'critical-allergy', hidden: true });
    this.sections = new Map();
    const parts = SECTIONS.map(([id, title]) => {
      const body = h('div', { className: 'record-section__body' }, placeholder(this.empty));
      const section = h(
        'section',
        { className: 'record-section', 'data-section': id, 'data-filled': 'false' },
        h('h3', {}, title),
        body,
      );
      this.sections.set(id, { section, body, snapshot: null });
      return section;
    });
    this.container.replaceChildren(this.alert, ...parts);
  }

  update(record) {
    for (const [id, , pick, render] of SECTIONS) {
      const slot = this.sections.get(id);
      const snapshot = JSON.stringify(pick(record) ?? null);
      if (snapshot === slot.snapshot) continue;
      slot.snapshot = snapshot;
      const content = render(record);
      slot.body.replaceChildren(content ?? placeholder(this.empty));
      slot.section.dataset.filled = String(content !== null);
      if (content !== null && this.highlight) flash(slot.section);
    }
    const critical = (record.allergies ?? []).filter(isLifeThreatening);
    this.alert.hidden = critical.length === 0;
    this.alert.replaceChildren(
      h('span', { className: 'critical-alert__icon', 'aria-hidden': 'true' }, '!'),
      h(
        'p',
        {},
        h('strong', {}, critical.length > 1 ? 'Life-threatening allergies: ' : 'Life-threatening allergy: '),
        critical.map((a) => capitalize(a.allergen)).join(', '),
      ),
    );
  }
}

function placeholder(text) {
  return h('p', { className: 'placeholder' }, text);
}

function flash(section) {
  section.classList.remove('is-updated');
  void section.offsetWidth;
  section.classList.add('is-updated');
}

function present(value) {
  if (Array.isArray(value)) return value.length > 0;
  if (value === null || value === undefined || value === false) return false;
  return String(value).trim() !== '';
}

function capitalize(text) {
  const value = String(text);
  return value.charAt(0).toUpperCase() + value.slice(1);
}

function fields(rows) {
  const shown = rows.filter(([, value]) => present(value));
  if (shown.length === 0) return null;
  return h(
    'dl',
    { className: 'fields' },
    shown.map(([label, value]) =>
      h('div', { className: 'fields__row' }, h('dt', {}, label), h('dd', {}, Array.isArray(value) ? value.join(', ') : value)),
    ),
  );
}

function formatDate(iso) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso ?? '');
  if (!match) return iso;
  const date = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])));
  return date.toLocaleDateString(undefined, { year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' });
}

function renderPatient(record) {
  const p = record.patient_info;
  if (!p) return null;
  return fields([
    ['Name', p.name],
    ['Date of birth', p.date_of_birth && formatDate(p.date_of_birth)],
    ['Phone', p.phone],
    ['Email', p.email],
  ]);
}

function renderComplaints(record) {
  const illness = record.present_illness;
  if (!illness) return null;
  const complaints = (illness.chief_complaints ?? []).map((c) =>
    h(
      'li',
      { className: 'item' },
      h('p', { className: 'item__title' }, capitalize(c.complaint)),
      fields([
        ['How long', c.duration],
        ['Severity', present(c.severity) && (/^\d+$/.test(String(c.severity)) ? `${c.severity} out of 10` : c.severity)],
        ['Started', c.onset],
        ['Where', c.location],
      ]),
    ),
  );
  const extra = fields([
    ['Symptoms', illness.symptoms],
    ['Timeline', illness.timeline],
  ]);
  if (complaints.length === 0 && !extra) return null;
  return h('div', {}, complaints.length > 0 && h('ul', { className: 'items' }, complaints), extra);
}

function renderMedications(record) {
  const medications = record.medications ?? [];
  if (medications.length === 0) return null;
  return h(
    'ul',
    { className: 'items' },
    medications.map((m) =>
      h(
        'li',
        { className: 'item medication' },
        h('p', { className: 'item__title' }, m.name, present(m.dose) && h('span', { className: 'dose' }, m.dose)),
        fields([
          ['How often', m.frequency],
          ['How taken', m.route],
          ['For', m.indication],
          ['Taken as prescribed', m.adherence],
          ['How well it works', m.effectiveness],
        ]),
      ),
    ),
  );
}

function renderAllergies(record) {
  const allergies = record.allergies ?? [];
  if (allergies.length === 0) return null;
  return h(
    'ul',
    { className: 'items' },
    allergies.map((a) => {
      const critical = isLifeThreatening(a);
      return h(
        'li',
        { className: critical ? 'item allergy allergy--critical' : 'item allergy', 'data-severity': a.severity },
        h(
          'p',
          { className: 'item__title' },
          capitalize(a.allergen),
          critical && h('span', { className: 'badge badge--danger' }, 'Life-threatening'),
        ),
        fields([
          ['Reaction', a.reaction],
          ['Severity', !critical && present(a.severity) && capitalize(a.severity)],
          ['Emergency treatment', a.requires_emergency_treatment && 'Needed (for example an EpiPen or the ER)'],
        ]),
      );
    }),
  );
}

function renderHistory(record) {
  const past = record.past_medical_history ?? {};
  return fields([
    ['Conditions', past.conditions],
    ['Surgeries', past.surgeries],
    ['Hospital stays', past.hospitalizations],
    ['Family history', record.family_history?.conditions],
  ]);
}

function renderSocial(record) {
  const social = record.social_history;
  if (!social) return null;
  return fields([
    ['Smoking', social.smoking],
    ['Alcohol', social.alcohol],
    ['Recreational drugs', social.drugs],
    ['Work', social.occupation],
    ['Exercise', social.exercise],
  ]);
}
