// The queue: today's intakes, newest first, with their flags.

import { h } from './dom.js';
import { STATUS, TEXT } from './wording.js';

export function flagBadges(intake) {
  const badges = [];
  if (intake.flags.emergency_reported) {
    badges.push(h('span', { className: 'badge badge--danger', 'data-testid': 'emergency-flag' },
      TEXT.emergency(intake.flags.emergency_reported)));
  }
  if (intake.flags.life_threatening_allergy || intake.flags.emergency) {
    badges.push(h('span', { className: 'badge badge--danger', 'data-testid': 'allergy-flag' }, TEXT.critical));
  }
  if (intake.practice) badges.push(h('span', { className: 'badge' }, TEXT.practice));
  return badges;
}

export function renderQueue(list, intakes, { selected, onOpen }) {
  if (!intakes.length) {
    list.replaceChildren(h('li', { className: 'hint' }, TEXT.queueEmpty));
    return;
  }
  list.replaceChildren(
    ...intakes.map((intake) => {
      const button = h(
        'button',
        {
          type: 'button',
          className: 'queue-item',
          'data-testid': 'queue-item',
          'data-id': intake.id,
          'data-status': intake.status,
          'aria-current': intake.id === selected ? 'true' : null,
        },
        h('span', { className: 'queue-item__name' }, intake.patient_name ?? TEXT.noName),
        h('span', { className: 'queue-item__meta' },
          `${intake.date_of_birth ?? TEXT.noDob} · ${intake.chief_complaint ?? TEXT.noComplaint}`),
        h('span', { className: 'queue-item__status' },
          `${new Date(intake.started_at).toLocaleTimeString()} · ${STATUS[intake.status] ?? intake.status}`),
        h('span', { className: 'queue-item__flags' }, flagBadges(intake)),
      );
      button.addEventListener('click', () => onOpen(intake.id));
      return h('li', {}, button);
    }),
  );
}
