// Everything the workspace says to staff, in one place.

export const TEXT = {
  title: 'Intake workspace',
  signInTitle: 'Sign in',
  tokenLabel: 'Staff token',
  signInHint: 'Kept in this browser tab only, and forgotten when the tab closes.',
  signIn: 'Sign in',
  signOut: 'Sign out',
  queueTitle: "Today's intakes",
  showPractice: 'Show practice intakes',
  queueEmpty: 'No intakes yet today.',
  updatedAt: (time) => `Updated ${time}. Refreshes by itself.`,
  markReviewed: 'Mark reviewed',
  downloadFhir: 'Download FHIR',
  downloadJson: 'Download JSON',
  print: 'Print',
  recordTitle: 'Record',
  transcriptTitle: 'Transcript',
  versionsTitle: 'Version history',
  noRecord: 'No record has been extracted yet.',
  noName: 'Name not given',
  noDob: 'date of birth not given',
  noComplaint: 'no complaint recorded',
  practice: 'Practice',
  emergency: (source) => (source === 'server' ? 'Emergency (red-flag words)' : 'Emergency flagged'),
  critical: 'Life-threatening allergy',
  edit: 'Edit',
  editLabel: (label) => `New value for ${label}`,
  reasonLabel: 'Reason for the change',
  save: 'Save correction',
  cancel: 'Cancel',
  saved: 'Correction saved as a new version.',
  reviewed: (who, version) => `Reviewed by ${who} (version ${version}).`,
  notReviewed: 'Not reviewed yet.',
  version: (v) => `Version ${v.version}`,
  versionBy: (v) => (v.author ? `corrected by ${v.author}: ${v.reason}` : `extracted by ${v.model ?? 'the model'}`),
  detailMeta: (i) => `Started ${new Date(i.started_at).toLocaleTimeString()} · ${STATUS[i.status] ?? i.status}`,
  failedDeliveries: (n) => `${n} staff notification(s) could not be delivered. Check the webhook and mail settings.`,
  interrupted: '(interrupted)',
};

export const STATUS = {
  in_progress: 'In progress',
  completed: 'Completed',
  incomplete: 'Incomplete',
  failed: 'Failed',
  abandoned: 'Abandoned',
};

export const SECTIONS = {
  patient_info: 'Patient',
  present_illness: 'Present illness',
  medications: 'Medications',
  allergies: 'Allergies',
  allergies_reviewed: 'Allergies reviewed',
  past_medical_history: 'Past medical history',
  family_history: 'Family history',
  social_history: 'Social history',
};

export const ROLES = { patient: 'Patient', assistant: 'Assistant' };

// The API's errors, in plain words.
export function describeFailure(status) {
  if (status === 401) return 'That staff token was not accepted. Check it and sign in again.';
  if (status === 404) return 'That intake no longer exists.';
  if (status === 409) return 'The record changed at the same moment. Please make the correction again.';
  if (status === 422) return 'That value is not valid for this field.';
  if (status === 0) return 'The server cannot be reached. Check the connection; the page keeps trying.';
  return 'Something went wrong on the server. Please try again.';
}
