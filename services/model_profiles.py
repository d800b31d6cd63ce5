"""What each Live model accepts, so the setup the server sends is one the model takes.

From Google's model pages and the 2.5 -> 3.8 Live migration notes (September 2026):
3.8 Live has no affective dialog and no thinking settings, always-on proactive audio
(asking to turn it off is an error), asynchronous (NON_BLOCKING) function calls with
response scheduling, and transcription vocabulary hints; the 2.5 native-audio models call
functions blocking and take no vocabulary.
"""

import re
from dataclasses import dataclass, replace
from typing import Literal

from google.genai import types

Platform = Literal["gemini_api", "vertex_ai"]


@dataclass(frozen=True)
class LiveModelProfile:
    name: str
    platform: Platform
    # NON_BLOCKING declarations and FunctionResponse.scheduling.
    async_function_calls: bool
    # AudioTranscriptionConfig.custom_vocabulary.
    transcription_vocabulary: bool
    # SessionResumptionConfig.transparent: Vertex AI only (the SDK refuses it for API keys).
    transparent_resumption: bool
    affective_dialog: bool
    thinking: bool
    # False where proactive audio is always on and `proactive_audio: false` is an error.
    proactivity_configurable: bool

    @property
    def tool_response_scheduling(self) -> types.FunctionResponseScheduling | None:
        # WHEN_IDLE: the model finishes the sentence it is saying while the record is saved,
        # then speaks the outcome. INTERRUPT would cut that sentence off, and SILENT would
        # leave the patient without a spoken "saved" or "we are missing ...".
        return types.FunctionResponseScheduling.WHEN_IDLE if self.async_function_calls else None


GEMINI_3_8_LIVE = LiveModelProfile(
    name="gemini-3.8-live",
    platform="gemini_api",
    async_function_calls=True,
    transcription_vocabulary=True,
    transparent_resumption=False,
    affective_dialog=False,
    thinking=False,
    proactivity_configurable=False,
)
GEMINI_2_5_NATIVE_AUDIO = LiveModelProfile(
    name="gemini-2.5-flash-native-audio-preview-12-2025",
    platform="gemini_api",
    async_function_calls=False,
    transcription_vocabulary=False,
    transparent_resumption=False,
    affective_dialog=True,
    thinking=True,
    proactivity_configurable=True,
)
# The same model under its Vertex AI name.
VERTEX_2_5_NATIVE_AUDIO = LiveModelProfile(
    name="gemini-live-2.5-flash-native-audio",
    platform="vertex_ai",
    async_function_calls=False,
    transcription_vocabulary=False,
    transparent_resumption=True,
    affective_dialog=True,
    thinking=True,
    proactivity_configurable=True,
)

LIVE_MODELS = {
    p.name: p
    for p in (
        GEMINI_3_8_LIVE,
        GEMINI_2_5_NATIVE_AUDIO,
        replace(GEMINI_2_5_NATIVE_AUDIO, name="gemini-2.5-flash-native-audio-preview-09-2025"),
        VERTEX_2_5_NATIVE_AUDIO,
    )
}


def live_profile(model: str) -> LiveModelProfile:
    """The profile for `model`; an unknown model gets the 2.5 rules, the most conservative
    setup (blocking calls, no vocabulary), under its own name."""
    name = model.removeprefix("models/")
    known = LIVE_MODELS.get(name)
    if known is not None:
        return known
    platform: Platform = "vertex_ai" if name.startswith("gemini-live-") else "gemini_api"
    return LiveModelProfile(
        name=name,
        platform=platform,
        async_function_calls=False,
        transcription_vocabulary=False,
        transparent_resumption=False,
        affective_dialog=False,
        thinking=False,
        proactivity_configurable=False,
    )


def extraction_thinking(model: str) -> types.ThinkingConfig | None:
    """A low thinking level for extraction where the model takes one (Gemini 3 and later):
    copying what a transcript says into a schema needs little reasoning, and every thinking
    token is paid for in latency before the record reaches the page. Older models get the
    model's default."""
    generation = re.match(r"(?:models/)?gemini-(\d+)", model)
    if generation and int(generation.group(1)) >= 3:
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)
    return None
