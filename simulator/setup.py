"""The Live API's setup message, field by field: anything Google would not recognise is refused.

Every level forbids unknown fields, so a misspelt setting fails here as it fails at Google
(close 1007). Keys are accepted in camelCase and snake_case, as the SDK mixes both.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

JsonObject = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


class PrebuiltVoiceConfig(_Strict):
    voice_name: str | None = None


class VoiceConfig(_Strict):
    prebuilt_voice_config: PrebuiltVoiceConfig | None = None
    replicated_voice_config: JsonObject | None = None


class SpeechConfig(_Strict):
    voice_config: VoiceConfig | None = None
    language_code: str | None = None
    multi_speaker_voice_config: JsonObject | None = None


class ThinkingConfig(_Strict):
    include_thoughts: bool | None = None
    thinking_budget: int | None = None
    thinking_level: Literal["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"] | None = None


class GenerationConfig(_Strict):
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_modalities: list[Literal["TEXT", "IMAGE", "AUDIO", "VIDEO"]] | None = None
    speech_config: SpeechConfig | None = None
    media_resolution: str | None = None
    seed: int | None = None
    thinking_config: ThinkingConfig | None = None
    enable_affective_dialog: bool | None = None
    translation_config: JsonObject | None = None


class FunctionDeclaration(_Strict):
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    parameters_json_schema: Any = None
    response: JsonObject | None = None
    response_json_schema: Any = None
    behavior: Literal["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"] | None = None


class Tool(_Strict):
    function_declarations: list[FunctionDeclaration] = []
    google_search: JsonObject | None = None
    google_search_retrieval: JsonObject | None = None
    code_execution: JsonObject | None = None
    url_context: JsonObject | None = None
    computer_use: JsonObject | None = None
    file_search: JsonObject | None = None
    google_maps: JsonObject | None = None
    mcp_servers: list[JsonObject] | None = None


class AutomaticActivityDetection(_Strict):
    disabled: bool = False
    start_of_speech_sensitivity: str | None = None
    end_of_speech_sensitivity: str | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


class RealtimeInputConfig(_Strict):
    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: str | None = None
    turn_coverage: str | None = None


class SessionResumption(_Strict):
    handle: str | None = None
    transparent: bool | None = None


class SlidingWindow(_Strict):
    target_tokens: int | None = None


class ContextWindowCompression(_Strict):
    trigger_tokens: int | None = None
    sliding_window: SlidingWindow | None = None


class AudioTranscriptionConfig(_Strict):
    language_codes: list[str] | None = None
    language_auto: JsonObject | None = None
    language_hints: JsonObject | None = None
    custom_vocabulary: list[str] | None = None
    adaptation_phrases: list[str] | None = None
    word_timestamp: bool | None = None
    diarization: bool | None = None
    mode: str | None = None
    source_text: str | None = None


class Proactivity(_Strict):
    proactive_audio: bool | None = None


class Setup(_Strict):
    model: str
    generation_config: GenerationConfig | None = None
    system_instruction: JsonObject | str | None = None
    tools: list[Tool] = []
    realtime_input_config: RealtimeInputConfig | None = None
    session_resumption: SessionResumption | None = None
    context_window_compression: ContextWindowCompression | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    proactivity: Proactivity | None = None
    history_config: JsonObject | None = None
    safety_settings: list[JsonObject] | None = None
    avatar_config: JsonObject | None = None

    @property
    def model_name(self) -> str:
        return self.model.removeprefix("models/")

    @property
    def function_names(self) -> set[str]:
        return {decl.name for decl in self.declarations}

    @property
    def declarations(self) -> list[FunctionDeclaration]:
        return [decl for tool in self.tools for decl in tool.function_declarations]

    def behavior_of(self, name: str) -> str | None:
        return next((decl.behavior for decl in self.declarations if decl.name == name), None)

    @property
    def automatic_activity_detection(self) -> bool:
        config = self.realtime_input_config
        detection = config.automatic_activity_detection if config else None
        return not (detection and detection.disabled)

    @property
    def transparent_resumption(self) -> bool:
        return bool(self.session_resumption and self.session_resumption.transparent)
