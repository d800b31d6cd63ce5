// The review screen after `intake_complete`: the whole record, a JSON download, the transcript.
import { RecordView } from './record-view.js';
import { renderTurns } from './transcript-view.js';

export class ReviewView {
  constructor(section, { turns }) {
    this.section = section;
    this.title = section.querySelector('h2');
    this.message = section.querySelector('#review-message');
    this.download = section.querySelector('#download');
    this.record = new RecordView(section.querySelector('#review-record'), {
      highlight: false,
      empty: 'Nothing recorded',
    });
    this.data = null;
    this.download.addEventListener('click', () => this.#download());
    // Rendered when opened: the assistant's closing words may still arrive after the review shows.
    const transcript = section.querySelector('#review-transcript');
    transcript.closest('details').addEventListener('toggle', (event) => {
      if (event.target.open) renderTurns(transcript, turns());
    });
  }

  show(message, data) {
    this.message.textContent = message;
    this.update(data);
    this.section.hidden = false;
    this.title.focus();
  }

  update(data) {
    this.data = data;
    if (data) this.record.update(data);
    this.download.disabled = !data;
  }

  #download() {
    const blob = new Blob([JSON.stringify(this.data, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const link = Object.assign(document.createElement('a'), {
      href: url,
      download: `intake-${new Date().toISOString().slice(0, 10)}.json`,
    });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}
