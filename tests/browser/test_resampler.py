"""The page's resampler in the real browser: the capture worklet turns tones at device
rates into 16 kHz PCM16 frames, and the playback direction keeps 24 kHz speech clean."""

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from playwright.async_api import Page

from tests.browser.conftest import FAKE_MICROPHONE, chromium

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

AMPLITUDE = 0.5
SECONDS = 1.2
# The filter's start-up transient (the oscillator starts abruptly) is left out of the analysis.
SETTLE_SECONDS = 0.1

# Feeds an oscillator through the page's real capture worklet in an OfflineAudioContext
# running at the device rate, and collects the PCM16 frames it posts.
CAPTURE = """
async ({ rate, frequency, amplitude, seconds }) => {
  const context = new OfflineAudioContext(1, Math.round(rate * seconds), rate);
  await context.audioWorklet.addModule('/capture-worklet.js');
  const capture = new AudioWorkletNode(context, 'capture-processor', {
    numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: 'explicit',
  });
  const frames = [];
  capture.port.onmessage = ({ data }) => {
    if (data.type === 'frame') frames.push(data.buffer);
  };
  const tone = new OscillatorNode(context, { frequency });
  tone.connect(new GainNode(context, { gain: amplitude })).connect(capture);
  tone.start();
  await context.startRendering();
  // Messages posted while rendering are delivered afterwards; wait until they stop coming.
  for (let seen = -1; seen !== frames.length; ) {
    seen = frames.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    sizes: frames.map((buffer) => buffer.byteLength),
    samples: frames.flatMap((buffer) => Array.from(new Int16Array(buffer))),
  };
}
"""

# The module on its own, as the playback worklet uses it: 24 kHz in 128-sample blocks.
RESAMPLE = """
async ({ inRate, outRate, frequency, amplitude, seconds }) => {
  const { Resampler } = await import('/resampler.js');
  const resampler = new Resampler(inRate, outRate);
  const total = Math.round(inRate * seconds);
  const out = [];
  for (let start = 0; start < total; start += 128) {
    const block = new Float32Array(Math.min(128, total - start));
    for (let i = 0; i < block.length; i++) {
      block[i] = amplitude * Math.sin((2 * Math.PI * frequency * (start + i)) / inRate);
    }
    out.push(...resampler.process(block));
  }
  return out;
}
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def page(tmp_path_factory: pytest.TempPathFactory, static_site: str) -> AsyncIterator[Page]:
    async with chromium(tmp_path_factory.mktemp("profile"), *FAKE_MICROPHONE) as context:
        page = await context.new_page()
        await page.route(
            f"{static_site}/resampler-test.html",
            lambda route: route.fulfill(
                body="<!doctype html><title>resampler</title>", content_type="text/html"
            ),
        )
        await page.goto(f"{static_site}/resampler-test.html")
        yield page


def spectrum_peak(signal: np.ndarray, rate: int) -> tuple[float, float]:
    """The strongest frequency (parabolic interpolation between bins) and the share of the
    signal's power more than 20 Hz away from it, in dB."""
    window = np.hanning(len(signal))
    power = np.abs(np.fft.rfft(signal * window)) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    k = int(np.argmax(power[1:-1])) + 1
    a, b, c = np.log(power[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    peak = float(freqs[k] + offset * (freqs[1] - freqs[0]))
    away = np.abs(freqs - peak) > 20
    residue_db = 10 * np.log10(power[away].sum() / power.sum())
    return peak, float(residue_db)


def level_db(signal: np.ndarray, amplitude: float) -> float:
    """RMS level relative to a sine of the given amplitude; silence counts as 1/10 of an LSB."""
    rms = max(float(np.sqrt(np.mean(signal**2))), 0.1 / 32768)
    return 20 * np.log10(rms / (amplitude / np.sqrt(2)))


async def capture(page: Page, rate: int, frequency: float) -> tuple[list[int], np.ndarray]:
    result = await page.evaluate(
        CAPTURE, {"rate": rate, "frequency": frequency, "amplitude": AMPLITUDE, "seconds": SECONDS}
    )
    samples = np.asarray(result["samples"], dtype=np.float64) / 32768
    return result["sizes"], samples[int(SETTLE_SECONDS * 16000) :]


@pytest.mark.parametrize("rate", [48000, 44100])
async def test_capture_keeps_a_1khz_tone_at_16khz(page: Page, rate: int) -> None:
    sizes, signal = await capture(page, rate, 1000)

    # 100 ms frames of 16 kHz PCM16; the filter's look-ahead holds back only a few samples.
    assert sizes and set(sizes) == {3200}
    assert len(sizes) * 1600 == pytest.approx(SECONDS * 16000, abs=1600)
    peak, residue = spectrum_peak(signal, 16000)
    assert peak == pytest.approx(1000, abs=1.0)
    assert abs(level_db(signal, AMPLITUDE)) < 1.0
    assert residue < -50, "the resampled tone carries distortion or block-edge clicks"


@pytest.mark.parametrize("rate", [48000, 44100])
async def test_capture_suppresses_a_10khz_tone(page: Page, rate: int) -> None:
    # 10 kHz is above the 8 kHz Nyquist of the output: by dropping samples it would fold to 6 kHz.
    sizes, signal = await capture(page, rate, 10000)

    assert len(sizes) * 1600 == pytest.approx(SECONDS * 16000, abs=1600)
    assert level_db(signal, AMPLITUDE) < -40


@pytest.mark.parametrize("out_rate", [48000, 44100])
async def test_playback_resampling_keeps_24khz_speech_free_of_images(page: Page, out_rate: int) -> None:
    samples = await page.evaluate(
        RESAMPLE,
        {
            "inRate": 24000,
            "outRate": out_rate,
            "frequency": 1000,
            "amplitude": AMPLITUDE,
            "seconds": 1,
        },
    )
    signal = np.asarray(samples)[int(SETTLE_SECONDS * out_rate) :]

    assert len(samples) == pytest.approx(out_rate, abs=100)
    peak, residue = spectrum_peak(signal, out_rate)
    assert peak == pytest.approx(1000, abs=1.0)
    assert abs(level_db(signal, AMPLITUDE)) < 1.0
    # A naive upsampler leaves an image at 24 kHz - 1 kHz = 23 kHz.
    assert residue < -60
