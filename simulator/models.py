"""The Live models the simulator serves and the setup each one refuses, as Google documents them.

Kept apart from the server's own profile (`services/model_profiles.py`) on purpose: the
simulator plays Google, so a server profile that drifts from these rules fails in tests.
"""

from dataclasses import dataclass

from simulator.setup import Setup

SETUP_MODEL_NOT_FOUND = (
    "models/{model} is not found for API version {version}, or is not supported for "
    "bidiGenerateContent. Call ListModels to see the list of available models."
)


@dataclass(frozen=True)
class LiveModel:
    name: str
    # NON_BLOCKING is the default and FunctionResponse.scheduling is honoured.
    async_function_calls: bool
    custom_vocabulary: bool
    affective_dialog: bool
    thinking: bool
    # False: proactive audio is always on and asking to turn it off is an error.
    proactivity_off_allowed: bool


_NATIVE_AUDIO_2_5 = {
    "async_function_calls": False,
    "custom_vocabulary": False,
    "affective_dialog": True,
    "thinking": True,
    "proactivity_off_allowed": True,
}
LIVE_MODELS = {
    model.name: model
    for model in (
        LiveModel(
            name="gemini-3.8-live",
            async_function_calls=True,
            custom_vocabulary=True,
            affective_dialog=False,
            thinking=False,
            proactivity_off_allowed=False,
        ),
        LiveModel(name="gemini-2.5-flash-native-audio-preview-12-2025", **_NATIVE_AUDIO_2_5),
        LiveModel(name="gemini-2.5-flash-native-audio-preview-09-2025", **_NATIVE_AUDIO_2_5),
    )
}


def live_model(name: str) -> LiveModel | None:
    return LIVE_MODELS.get(name.removeprefix("models/"))


def refusal(setup: Setup, model: LiveModel) -> str | None:
    """Google's reason for refusing this setup on this model, or None if it is accepted."""
    where = f"models/{model.name}"
    generation = setup.generation_config
    if generation is not None:
        if generation.enable_affective_dialog is not None and not model.affective_dialog:
            return _unsupported("generation_config.enable_affective_dialog", where)
        if generation.thinking_config is not None and not model.thinking:
            return _unsupported("generation_config.thinking_config", where)
        modalities = generation.response_modalities or []
        if any(modality != "AUDIO" for modality in modalities):
            return f"{where} supports only the AUDIO response modality."
    if setup.proactivity is not None and setup.proactivity.proactive_audio is False:
        if not model.proactivity_off_allowed:
            return f"Proactive audio is always on for {where} and cannot be disabled."
    transcription = setup.input_audio_transcription
    if transcription is not None and transcription.custom_vocabulary and not model.custom_vocabulary:
        return _unsupported("input_audio_transcription.custom_vocabulary", where)
    if setup.output_audio_transcription and setup.output_audio_transcription.custom_vocabulary:
        return _unsupported("output_audio_transcription.custom_vocabulary", where)
    return None


def _unsupported(field: str, where: str) -> str:
    # Short enough for a close frame's 123 bytes with the longest model name.
    return f"{field} is not supported by {where}."
