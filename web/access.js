// What the page needs to open a session: the clinic's access token (from the page link) and,
// when the server has no Gemini key of its own, the patient's key kept for this tab only.

const KEY_STORAGE = 'intake.geminiApiKey';

export function accessToken() {
  return new URLSearchParams(location.search).get('token');
}

// GET /api-key-status, or null when the server cannot say (the page then just tries).
export async function fetchKeyStatus() {
  const token = accessToken();
  try {
    const response = await fetch(new URL('/api-key-status', location.href), {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    return response.ok ? await response.json() : null;
  } catch (error) {
    console.warn('could not read /api-key-status:', error.message);
    return null;
  }
}

// sessionStorage, never localStorage: the key is gone when the tab closes.
export class KeyField {
  constructor(form, input) {
    this.form = form;
    this.input = input;
    this.required = false;
    input.addEventListener('input', () => {
      if (this.value) sessionStorage.setItem(KEY_STORAGE, this.value);
      else sessionStorage.removeItem(KEY_STORAGE);
    });
  }

  get value() {
    return this.input.value.trim();
  }

  require() {
    this.required = true;
    this.input.value = sessionStorage.getItem(KEY_STORAGE) ?? '';
    this.form.hidden = false;
  }

  reveal() {
    this.form.hidden = false;
    this.input.focus();
  }
}
