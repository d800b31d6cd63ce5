import numpy as np
import pytest

from utils.audio_processing import (
    INPUT_MIME,
    INPUT_RATE,
    OUTPUT_RATE,
    AudioFormatError,
    AudioProcessor,
    bytes_per_second,
)

pytestmark = pytest.mark.unit


def _sine(amplitude: float, seconds: float, rate: int = INPUT_RATE, hz: float = 440.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def test_rates_and_mime_describe_gemini_live_audio() -> None:
    assert (INPUT_RATE, OUTPUT_RATE) == (16000, 24000)
    assert INPUT_MIME == "audio/pcm;rate=16000"
    assert bytes_per_second(INPUT_RATE) == 32000
    assert bytes_per_second(OUTPUT_RATE) == 48000
    assert bytes_per_second(16000, channels=2) == 64000


def test_rms_of_a_full_scale_sine_is_amplitude_over_root_two() -> None:
    rms = AudioProcessor().rms(_sine(10000, 1.0))
    assert rms == pytest.approx(10000 / np.sqrt(2), rel=1e-3)


def test_rms_does_not_overflow_on_full_scale_square_wave() -> None:
    data = np.array([-32768, 32767] * 800, dtype="<i2").tobytes()
    assert AudioProcessor().rms(data) == pytest.approx(32767.5, rel=1e-4)


def test_rms_of_nothing_is_zero() -> None:
    assert AudioProcessor().rms(b"") == 0.0


def test_silence_is_judged_by_rms_threshold() -> None:
    processor = AudioProcessor()
    assert processor.is_silence(bytes(3200))
    assert processor.is_silence(_sine(300, 0.1))
    assert not processor.is_silence(_sine(3000, 0.1))
    assert not processor.is_silence(_sine(300, 0.1), threshold=100.0)


def test_duration_follows_rate_and_channels() -> None:
    assert AudioProcessor().duration_seconds(bytes(32000)) == 1.0
    assert AudioProcessor().duration_seconds(b"") == 0.0
    assert AudioProcessor(sample_rate=24000).duration_seconds(bytes(4800)) == 0.1
    assert AudioProcessor(channels=2).duration_seconds(bytes(32000)) == 0.5


def test_validate_chunk_accepts_whole_samples() -> None:
    AudioProcessor(max_chunk_bytes=640).validate_chunk(bytes(640))


@pytest.mark.parametrize(
    ("processor", "data", "message"),
    [
        (AudioProcessor(), b"", "empty"),
        (AudioProcessor(), bytes(641), "641 bytes, not a whole number of 2-byte"),
        (AudioProcessor(channels=2), bytes(642), "4-byte"),
        (AudioProcessor(max_chunk_bytes=640), bytes(642), "642 bytes; the limit is 640"),
    ],
)
def test_validate_chunk_rejections_say_why(processor: AudioProcessor, data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        processor.validate_chunk(data)


def test_audio_format_error_is_a_value_error() -> None:
    assert issubclass(AudioFormatError, ValueError)


@pytest.mark.parametrize("method", ["rms", "is_silence", "duration_seconds"])
def test_odd_length_audio_is_refused_everywhere(method: str) -> None:
    with pytest.raises(AudioFormatError):
        getattr(AudioProcessor(), method)(b"\x00\x01\x02")


def test_frames_split_audio_and_keep_the_short_tail() -> None:
    data = bytes(range(256)) * 5  # 1280 bytes = 40 ms at 16 kHz
    frames = list(AudioProcessor().frames(data, frame_ms=15))
    assert [len(f) for f in frames] == [480, 480, 320]
    assert b"".join(frames) == data


def test_frames_of_nothing_is_nothing() -> None:
    assert list(AudioProcessor().frames(b"", frame_ms=20)) == []


def test_frames_checks_its_arguments_before_iterating() -> None:
    processor = AudioProcessor(sample_rate=22050)
    with pytest.raises(ValueError, match="whole number of samples"):
        processor.frames(bytes(100), frame_ms=1)
    with pytest.raises(ValueError, match="positive"):
        processor.frames(bytes(100), frame_ms=0)
    with pytest.raises(AudioFormatError):
        AudioProcessor().frames(bytes(3), frame_ms=20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_width": 1},
        {"sample_width": 4},
        {"sample_rate": 0},
        {"channels": 0},
        {"max_chunk_bytes": 0},
    ],
)
def test_unsupported_formats_are_refused_at_construction(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        AudioProcessor(**kwargs)
