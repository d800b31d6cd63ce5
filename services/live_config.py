"""The Live session's configuration: voice, transcription, prompt and the completion tool."""

import functools

from google.genai import types

from config import Settings
from services.model_profiles import LiveModelProfile, live_profile

COMPLETE_INTAKE = "complete_intake"
FLAG_EMERGENCY = "flag_emergency"

_TONES = {
    "warm": "Be warm, empathetic, and caring in your tone.",
    "professional": "Maintain a professional and clinical tone throughout.",
    "friendly": "Be friendly, approachable, and conversational.",
}

REQUIRED_SECTIONS = (
    "Chief complaint",
    "Symptom details (location, duration, severity 1-10, triggers)",
    "Current medications (name, dose, frequency)",
    "Allergies (substance, reactions, severity)",
    "Past medical history (conditions, surgeries, hospitalizations)",
    "Social history (smoking, alcohol, occupation, exercise)",
)


def system_instruction(settings: Settings) -> str:
    sections = "\n".join(f"{n}. {name}" for n, name in enumerate(REQUIRED_SECTIONS, start=1))
    return f"""You are a medical intake assistant for {settings.CLINIC_NAME}, \
{settings.SPECIALTY} department. You gather the patient's information through natural \
conversation before their visit. You do not diagnose or give medical advice; if the patient \
describes an emergency, follow the EMERGENCIES rule below.

EMERGENCIES:
If the patient describes symptoms that may be an emergency happening now (for example chest \
pain with shortness of breath, signs of a stroke such as a drooping face, slurred speech or \
weakness on one side, severe bleeding, an allergic reaction with throat swelling or trouble \
breathing, or thoughts of suicide or self-harm), call {FLAG_EMERGENCY} at once with the reason \
and the symptoms in their words. Then tell the patient, in plain words, to call their local \
emergency number or get emergency care now, and that the clinic staff have been alerted. Do not \
carry on with the routine questions as if nothing happened; only continue if the patient is \
safe and asks to.

CONVERSATION STYLE:
- {_TONES[settings.GREETING_STYLE]}
- Ask one clear question at a time, in plain language.
- Always confirm allergies carefully: they are life-critical.
- Keep each reply to one or two sentences, except the final summary.

REQUIRED INFORMATION, IN THIS ORDER:
{sections}

COMPLETION PROTOCOL:
1. Summarize everything back to the patient.
2. Ask the patient to confirm it is accurate, and correct anything they change.
3. Only once the patient has confirmed the summary, call {COMPLETE_INTAKE}.
4. Never call {COMPLETE_INTAKE} before the patient has confirmed."""


def complete_intake_declaration(profile: LiveModelProfile) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(
        name=COMPLETE_INTAKE,
        description=(
            "Call this once you have collected all required intake information and the "
            "patient has confirmed your verbal summary. Saving takes a moment: keep talking "
            "to the patient, then tell them the outcome the response gives (saved, "
            "incomplete with the missing sections, or failed)."
        ),
        # Asynchronous where the model allows it, so the model keeps talking while the record
        # is extracted and saved instead of falling silent.
        behavior=types.Behavior.NON_BLOCKING if profile.async_function_calls else None,
    )


def flag_emergency_declaration(profile: LiveModelProfile) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(
        name=FLAG_EMERGENCY,
        description=(
            "Call this at once when the patient describes symptoms that may be an emergency "
            "happening now. The clinic's staff are alerted and the patient's screen shows the "
            "emergency instructions; then tell the patient to call the local emergency number."
        ),
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={
                "reason": types.Schema(type=types.Type.STRING, description="Why this may be an emergency"),
                "symptoms": types.Schema(
                    type=types.Type.ARRAY,
                    items=types.Schema(type=types.Type.STRING),
                    description="The symptoms, in the patient's words",
                ),
            },
            required=["reason", "symptoms"],
        ),
        # Asynchronous where the model allows it: the model tells the patient to get help at
        # once instead of waiting for the answer.
        behavior=types.Behavior.NON_BLOCKING if profile.async_function_calls else None,
    )


def live_connect_config(settings: Settings, *, resume_handle: str | None) -> types.LiveConnectConfig:
    """What a session sends in its setup. Everything but the resumption handle is the same for
    every session under the same settings, so it is built once and shared: building it costs
    about 0.1 ms (the SDK's models check every field), twice per connect, and in a burst of
    patients connecting every connect waits on the ones before it."""
    profile = live_profile(settings.GEMINI_LIVE_MODEL)
    # Keyed on what the setup is built from (the instruction as written, whatever settings it reads).
    shared = _shared_config(
        settings.GEMINI_LIVE_MODEL,
        tuple(settings.TRANSCRIPTION_VOCABULARY),
        settings.VOICE_MODEL,
        system_instruction(settings),
    )
    resumption = types.SessionResumptionConfig(
        handle=resume_handle, transparent=True if profile.transparent_resumption else None
    )
    # A shallow copy: the SDK reassigns fields of the config it is handed (this copy) but never
    # changes the shared parts inside it, and each session gets its own resumption part.
    return shared.model_copy(update={"session_resumption": resumption})


# Settings that differ (tests, a clinic that changes its name) each get their own entry.
@functools.lru_cache(maxsize=16)
def _shared_config(
    model: str, vocabulary: tuple[str, ...], voice: str, instruction: str
) -> types.LiveConnectConfig:
    profile = live_profile(model)
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(
            custom_vocabulary=list(vocabulary) if vocabulary and profile.transcription_vocabulary else None
        ),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=voice))
        ),
        system_instruction=types.Content(parts=[types.Part(text=instruction)]),
        tools=[
            types.Tool(
                function_declarations=[
                    complete_intake_declaration(profile),
                    flag_emergency_declaration(profile),
                ]
            )
        ],
        # Audio sessions stop at 15 minutes without compression; a sliding window lifts that.
        context_window_compression=types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow()),
    )


def function_response(
    settings: Settings, call: types.FunctionCall, response: dict[str, object]
) -> types.FunctionResponse:
    """The answer to one of the model's function calls, shaped for the configured Live model:
    scheduled so the model speaks it where calls are asynchronous, plain where they block
    (a blocking call's response is spoken anyway, and 2.5 ignores scheduling)."""
    scheduling = live_profile(settings.GEMINI_LIVE_MODEL).tool_response_scheduling
    return types.FunctionResponse(id=call.id, name=call.name, response=response, scheduling=scheduling)


# The SDK's models build their pydantic validators on first use: about 80 ms for what a session
# touches, paid inside the first session's connect and stalling every other one on the loop.
_MODELS_A_SESSION_USES = (
    types.LiveConnectParameters,
    types.LiveServerMessage,
    types.LiveClientContent,
    types.LiveClientToolResponse,
    types.LiveSendRealtimeInputParameters,
    types.LiveClientMessage,
    types.FunctionResponse,
    types.GenerateContentConfig,
    types.GenerateContentResponse,
)


def prepare_models(settings: Settings) -> None:
    """Builds those validators at start-up instead."""
    live_connect_config(settings, resume_handle=None)
    for model in _MODELS_A_SESSION_USES:
        model.model_rebuild()
