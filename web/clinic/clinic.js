// The staff workspace: sign in, the queue (polled), one intake with corrections, review, downloads.

import { ApiError, api, startOfToday, token } from './api.js';
import { IntakeView } from './intake.js';
import { renderQueue } from './queue.js';
import { TEXT, describeFailure } from './wording.js';

const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);
const ui = {
  form: $('sign-in-form'),
  tokenInput: $('staff-token'),
  signOut: $('sign-out'),
  alert: $('alert'),
  workspace: $('workspace'),
  showPractice: $('show-practice'),
  queue: $('queue'),
  updated: $('queue-updated'),
  failed: $('failed-deliveries'),
  detail: $('detail'),
  detailTitle: $('detail-title'),
  detailMeta: $('detail-meta'),
  reviewState: $('review-state'),
};

const state = { selected: null, poller: null };
const view = new IntakeView(
  { record: $('record'), transcript: $('transcript'), versions: $('versions') },
  { onCorrect: correct },
);

function fillWording() {
  document.title = TEXT.title;
  const texts = {
    title: TEXT.title, 'sign-in-title': TEXT.signInTitle, 'staff-token-label': TEXT.tokenLabel,
    'sign-in-hint': TEXT.signInHint, 'sign-in': TEXT.signIn, 'sign-out': TEXT.signOut,
    'queue-title': TEXT.queueTitle, 'show-practice-label': TEXT.showPractice,
    'mark-reviewed': TEXT.markReviewed, 'download-fhir': TEXT.downloadFhir, 'download-json': TEXT.downloadJson,
    print: TEXT.print, 'record-title': TEXT.recordTitle, 'transcript-title': TEXT.transcriptTitle,
    'versions-title': TEXT.versionsTitle,
  };
  for (const [id, text] of Object.entries(texts)) $(id).textContent = text;
}

function showAlert(text) {
  ui.alert.textContent = text ?? '';
  ui.alert.hidden = !text;
}

function failed(error) {
  if (!(error instanceof ApiError)) throw error;
  showAlert(describeFailure(error.status));
  if (error.status === 401) signOut();
}

async function refreshQueue() {
  const since = encodeURIComponent(startOfToday());
  const wanted = [false, ...(ui.showPractice.checked ? [true] : [])];
  const lists = await Promise.all(wanted.map((p) => api(`/api/intakes?since=${since}&practice=${p}&limit=200`)));
  const intakes = lists.flat().sort((a, b) => b.started_at.localeCompare(a.started_at));
  renderQueue(ui.queue, intakes, { selected: state.selected, onOpen: open });
  ui.updated.textContent = TEXT.updatedAt(new Date().toLocaleTimeString());
  const failures = (await api('/api/notifications?status=failed&limit=200')).filter(
    (d) => d.created_at >= startOfToday(),
  );
  ui.failed.textContent = TEXT.failedDeliveries(failures.length);
  ui.failed.hidden = failures.length === 0;
}

async function poll() {
  try {
    await refreshQueue();
    if (ui.alert.textContent === describeFailure(0)) showAlert(null);
  } catch (error) {
    failed(error);
  }
}

function showIntake(intake) {
  ui.detail.hidden = false;
  ui.detail.dataset.id = intake.id;
  ui.detailTitle.textContent = intake.patient_name ?? TEXT.noName;
  ui.detailMeta.textContent = TEXT.detailMeta(intake);
  const review = intake.review;
  ui.reviewState.textContent = review.reviewed ? TEXT.reviewed(review.reviewed_by, review.reviewed_version) : TEXT.notReviewed;
  view.render(intake);
}

async function open(id) {
  state.selected = id;
  try {
    showIntake(await api(`/api/intakes/${encodeURIComponent(id)}`));
    ui.detailTitle.focus();
    showAlert(null);
  } catch (error) {
    failed(error);
  }
  poll();
}

async function correct(patch, reason) {
  try {
    showIntake(await api(`/api/intakes/${encodeURIComponent(state.selected)}`, { method: 'PATCH', body: { patch, reason } }));
    showAlert(null);
    ui.reviewState.textContent = `${TEXT.saved} ${ui.reviewState.textContent}`;
  } catch (error) {
    failed(error);
  }
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function download(kind) {
  const id = state.selected;
  try {
    if (kind === 'fhir') {
      save(await api(`/api/intakes/${encodeURIComponent(id)}/fhir`, { raw: true }), `intake-${id}.fhir.json`);
    } else {
      const intake = await api(`/api/intakes/${encodeURIComponent(id)}`);
      save(new Blob([JSON.stringify(intake, null, 2)], { type: 'application/json' }), `intake-${id}.json`);
    }
  } catch (error) {
    failed(error);
  }
}

async function markReviewed() {
  try {
    const review = await api(`/api/intakes/${encodeURIComponent(state.selected)}/review`, { method: 'POST' });
    ui.reviewState.textContent = TEXT.reviewed(review.reviewed_by, review.reviewed_version);
  } catch (error) {
    failed(error);
  }
}

function signedIn() {
  ui.form.hidden = true;
  ui.workspace.hidden = false;
  ui.signOut.hidden = false;
  clearInterval(state.poller);
  state.poller = setInterval(poll, POLL_MS);
  poll();
}

function signOut() {
  token.clear();
  clearInterval(state.poller);
  state.selected = null;
  ui.workspace.hidden = true;
  ui.detail.hidden = true;
  ui.signOut.hidden = true;
  ui.form.hidden = false;
  ui.tokenInput.value = '';
  ui.tokenInput.focus();
}

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  token.set(ui.tokenInput.value.trim());
  try {
    await api('/api/intakes?limit=1');
    showAlert(null);
    signedIn();
  } catch (error) {
    failed(error);
  }
});
ui.signOut.addEventListener('click', () => {
  showAlert(null);
  signOut();
});
ui.showPractice.addEventListener('change', poll);
$('mark-reviewed').addEventListener('click', markReviewed);
$('download-fhir').addEventListener('click', () => download('fhir'));
$('download-json').addEventListener('click', () => download('json'));
$('print').addEventListener('click', () => window.print());

fillWording();
if (token.get()) signedIn();
