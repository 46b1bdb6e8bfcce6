"""Code-path tests of the MedGemma expert: they prove loading, prompting, parsing and box assembly, not accuracy.

The model is a tiny randomly initialised Gemma 3 built offline in a temporary folder
(:mod:`tests.medgemma_tiny`); its answers are random text. Where a test needs an
answer with boxes in it, the model's answer is replaced by a fixed one, so what is
checked is the path from answer text to ``BOXES`` on the right slices.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from oncoflow_inference.binary_tensors import TensorError
from oncoflow_inference.experts.base import ExpertInputError, ExpertNotReady
from oncoflow_inference.experts.box_answer_parser import first_sentence, parse_boxes
from oncoflow_inference.experts.medgemma_expert import (
    BOX_PROMPT,
    FINDINGS,
    FINDINGS_PROMPT,
    Localisation,
    MedGemmaExpert,
    head_slices,
    medgemma_expert_from_parameters,
    spread,
    window_slice,
)
from oncoflow_inference.segmentation_tensors import IMAGE, SPACING_MM

from oncoflow.core.prompts import BOXES, boxes_from_tensor

from .medgemma_tiny import build_tiny_medgemma

# ---------------------------------------------------------------- parser: boxes


def test_parse_json_list_maps_thousandths_to_pixels() -> None:
    text = '[{"box_2d": [100, 200, 500, 600], "label": "tumour"}, {"box_2d": [0, 0, 250, 125], "label": "tumour"}]'
    # 64 columns wide, 32 rows high: rows scale by 32/1000, columns by 64/1000
    assert parse_boxes(text, width=64, height=32) == [(3.2, 12.8, 16.0, 38.4), (0.0, 0.0, 8.0, 8.0)]


def test_parse_fenced_json_with_chatter() -> None:
    text = 'Sure! Here are the boxes:\n```json\n[\n  {"box_2d": [400, 300, 600, 500], "label": "tumour"}\n]\n```\nDone.'
    assert parse_boxes(text, 100, 100) == [(40.0, 30.0, 60.0, 50.0)]


def test_parse_single_object_and_synonym_keys() -> None:
    assert parse_boxes('{"box_2d": [100, 100, 200, 200]}', 10, 10) == [(1.0, 1.0, 2.0, 2.0)]
    assert parse_boxes('{"bbox": [100, 100, 200, 200]}', 10, 10) == [(1.0, 1.0, 2.0, 2.0)]
    assert parse_boxes('{"tumours": [{"box_2d": [100, 100, 200, 200]}]}', 10, 10) == [(1.0, 1.0, 2.0, 2.0)]


def test_parse_truncated_json_keeps_complete_objects() -> None:
    text = '```json\n[{"box_2d": [100, 100, 300, 300], "label": "tumour"}, {"box_2d": [500, 500, 7'
    assert parse_boxes(text, 10, 10) == [(1.0, 1.0, 3.0, 3.0)]


def test_parse_paligemma_loc_tokens() -> None:
    text = "<loc0256><loc0512><loc0768><loc1023> tumour ; <loc0000><loc0000><loc0512><loc0512> tumour"
    boxes = parse_boxes(text, width=1024, height=2048)
    assert boxes == [(512.0, 512.0, 1536.0, 1023.0), (0.0, 0.0, 1024.0, 512.0)]


def test_parse_plain_bracketed_numbers_and_fractions() -> None:
    assert parse_boxes("The tumour is at [100, 200, 300, 400].", 10, 10) == [(1.0, 2.0, 3.0, 4.0)]
    assert parse_boxes("box (0.1, 0.2, 0.3, 0.4)", 10, 10) == [(1.0, 2.0, 3.0, 4.0)]


def test_parse_reversed_corners_are_swapped() -> None:
    assert parse_boxes('[{"box_2d": [500, 600, 100, 200]}]', 10, 10) == [(1.0, 2.0, 5.0, 6.0)]


def test_parse_out_of_range_is_clipped_to_the_image() -> None:
    assert parse_boxes('[{"box_2d": [-50, 900, 1200, 1500]}]', width=20, height=10) == [(0.0, 18.0, 9.0, 19.0)]


def test_parse_drops_degenerate_nan_and_negative_boxes() -> None:
    text = json.dumps([
        {"box_2d": [100, 100, 100, 400]},  # zero height
        {"box_2d": [100, 100, 400]},  # three numbers
        {"box_2d": ["a", 1, 2, 3]},
        {"box_2d": [100, 100, 400, 400], "label": "no tumour"},
        {"box_2d": [200, 200, 300, 300], "label": "tumour"},
    ])
    assert parse_boxes(text, 10, 10) == [(2.0, 2.0, 3.0, 3.0)]
    assert parse_boxes('[{"box_2d": [NaN, 100, 400, 400]}]', 10, 10) == []
    assert parse_boxes('[{"box_2d": [Infinity, 100, 400, 400]}]', 10, 10) == []
    assert parse_boxes('[{"box_2d": [2000, 100, 3000, 400]}]', 10, 10) == []  # both rows clip to 1000


def test_parse_json_with_brackets_in_strings_and_odd_quotes_in_chatter() -> None:
    text = '[{"box_2d": [100, 100, 400, 400], "label": "tumour [left] }"}]'
    assert parse_boxes(text, 10, 10) == [(1.0, 1.0, 4.0, 4.0)]
    text = 'The 5" lesion: [{"box_2d": [100, 100, 400, 400], "label": "tumour"}]'
    assert parse_boxes(text, 10, 10) == [(1.0, 1.0, 4.0, 4.0)]


def test_parse_duplicates_collapse_and_count_is_bounded() -> None:
    one = '{"box_2d": [100, 100, 400, 400]}'
    assert parse_boxes(f"[{one}, {one}]", 10, 10) == [(1.0, 1.0, 4.0, 4.0)]
    many = json.dumps([{"box_2d": [i, 0, i + 10, 10]} for i in range(100)])
    assert len(parse_boxes(many, 1000, 1000, max_boxes=5)) == 5


@pytest.mark.parametrize(
    "text",
    ["", "   ", "[]", "```json\n[]\n```", "No tumour is seen.", "no tumour", "None", "{}", "null", "[[]]",
     '{"box_2d": null}', "[1, 2, 3]", "<loc0100><loc0200>"],
)
def test_parse_answers_without_boxes_give_none(text: str) -> None:
    assert parse_boxes(text, 64, 64) == []


def test_parse_never_raises_on_garbage() -> None:
    generator = random.Random(7)
    alphabet = '[]{}(),:."0123456789-+eE box_2d<loc>NaN \n`json'
    texts = ["[" * 5000, "{" * 5000 + "}" * 10, "\x00\ufffd\ud800", '{"box_2d": [1e400, 0, 1e400, 5]}']
    texts += ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 300))) for _ in range(300)]
    for text in texts:
        boxes = parse_boxes(text, 37, 23)
        for row_min, col_min, row_max, col_max in boxes:
            assert 0 <= row_min <= row_max <= 22
            assert 0 <= col_min <= col_max <= 36
    assert parse_boxes(None, 10, 10) == []  # type: ignore[arg-type]
    assert parse_boxes('[{"box_2d": [1, 2, 3, 4]}]', 0, 10) == []


def test_parser_stays_fast_on_pathological_answers() -> None:
    texts = ["[" * 20_000, "[" * 10_000 + "]" * 10_000, "[1," * 7_000, "{" * 20_000, '["' * 10_000,
             "```" * 7_000, '[{"a": ' * 3_000]
    started = time.perf_counter()
    for text in texts:
        assert parse_boxes(text, 10, 10) == []
        first_sentence(text)
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------- parser: findings


def test_first_sentence_strips_markup_and_json() -> None:
    text = ('```json\n[{"box_2d": [1, 2, 3, 4]}]\n```\n**Findings:**  A 3.5 cm enhancing mass\n'
            "in the left frontal lobe. More.")
    assert first_sentence(text) == "Findings: A 3.5 cm enhancing mass in the left frontal lobe."
    assert first_sentence('[{"box_2d": [1, 2, 3, 4]}] Ring-enhancing lesion! Next.') == "Ring-enhancing lesion!"
    truncated = 'Necrotic mass, right temporal lobe [{"box_2d": [100, 2'
    assert first_sentence(truncated) == "Necrotic mass, right temporal lobe"


def test_first_sentence_tokens_controls_and_length() -> None:
    assert first_sentence("<start_of_turn>model\nNo tumour is seen.<end_of_turn>") == "model No tumour is seen."
    assert first_sentence("\x00\x07\ufffd ok") == "ok"
    assert first_sentence("") == ""
    assert first_sentence('[{"box_2d": [1, 2, 3, 4]}]') == ""
    long = "word " * 200
    cut = first_sentence(long, max_chars=50)
    assert len(cut) <= 50 and cut.endswith("...") and cut.startswith("word word")
    assert first_sentence(None) == ""  # type: ignore[arg-type]


# ---------------------------------------------------------------- slices and pictures


def test_head_slices_skip_air_and_spread_picks_bin_centres() -> None:
    volume = np.zeros((12, 16, 16), np.float32)
    volume[2:10, 4:12, 4:12] = 100.0
    assert head_slices(volume) == list(range(2, 10))
    assert head_slices(np.zeros((5, 4, 4), np.float32)) == [0, 1, 2, 3, 4]
    assert spread(list(range(2, 10)), 1) == [6]
    assert spread(list(range(2, 10)), 4) == [3, 5, 7, 9]
    assert spread([1, 2], 8) == [1, 2]


def test_window_slice_is_rgb_8bit_with_true_aspect() -> None:
    pixels = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    picture = window_slice(pixels, (1.0, 1.0))
    assert picture.mode == "RGB" and picture.size == (30, 20)
    array = np.asarray(picture)
    assert array.min() == 0 and array.max() == 255
    assert window_slice(pixels, (2.0, 1.0)).size == (30, 40)  # rows twice as far apart: twice as many
    assert np.asarray(window_slice(np.full((8, 8), 5.0), (1.0, 1.0))).max() == 0  # flat slice, no NaN


# ---------------------------------------------------------------- an expert without a model


def test_missing_folder_is_not_ready_and_never_makes_a_mask(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    expert = MedGemmaExpert(folder)
    expert.load()
    assert not expert.ready
    assert str(folder) in (expert.not_ready_reason or "")
    volume = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ExpertNotReady):
        expert.predict(volume, (1.0, 1.0, 1.0))
    with pytest.raises(ExpertNotReady):
        expert.localise(volume, (1.0, 1.0, 1.0))
    with pytest.raises(ExpertNotReady):
        expert.infer({IMAGE: volume, SPACING_MM: np.ones(3, np.float32)}, {BOXES})


def test_folder_without_config_or_weights_names_what_is_missing(tmp_path: Path) -> None:
    expert = MedGemmaExpert(tmp_path)
    expert.load()
    assert not expert.ready and "config.json" in (expert.not_ready_reason or "")
    (tmp_path / "config.json").write_text("{}")
    expert.load()
    assert not expert.ready and "weights" in (expert.not_ready_reason or "")


def test_broken_folder_is_not_ready_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gemma3"')  # truncated JSON
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    expert = MedGemmaExpert(tmp_path)
    expert.load()
    assert not expert.ready
    reason = expert.not_ready_reason or ""
    assert reason.startswith(f"MedGemma failed to load {tmp_path}: ") and "Error" in reason


def test_expert_from_parameters(tmp_path: Path) -> None:
    expert = medgemma_expert_from_parameters("mg", {}, tmp_path)
    assert expert.model_dir == tmp_path / "medgemma" and expert.max_queries == 8 and expert.max_new_tokens == 96
    expert = medgemma_expert_from_parameters(
        "mg", {"model_dir": "weights/mg", "max_queries": "3", "max_new_tokens": " 40 "}, tmp_path, torch_threads=1
    )
    assert (expert.name, expert.model_dir, expert.max_queries, expert.max_new_tokens, expert.torch_threads) == (
        "mg", tmp_path / "weights/mg", 3, 40, 1)
    assert medgemma_expert_from_parameters("mg", {"model_dir": "/opt/mg"}, tmp_path).model_dir == Path("/opt/mg")
    override = tmp_path / "hospital"
    assert medgemma_expert_from_parameters("mg", {"model_dir": "x"}, tmp_path, model_dir=override).model_dir == override
    for key, value in (("max_queries", "0"), ("max_queries", "many"), ("max_new_tokens", "-4"),
                       ("max_new_tokens", "2.5")):
        with pytest.raises(ValueError, match=key):
            medgemma_expert_from_parameters("mg", {key: value}, tmp_path)


# ---------------------------------------------------------------- the tiny model


@pytest.fixture(scope="module")
def tiny_expert(tmp_path_factory: pytest.TempPathFactory) -> MedGemmaExpert:
    folder = build_tiny_medgemma(tmp_path_factory.mktemp("medgemma"))
    expert = MedGemmaExpert(folder, name="medgemma-tiny", max_queries=3, max_new_tokens=12, torch_threads=2)
    expert.load()
    assert expert.ready, expert.not_ready_reason
    return expert


def _volume() -> np.ndarray:
    volume = np.random.default_rng(3).random((12, 64, 64), dtype=np.float32) * 100
    volume[:2] = 0.0  # air above and below the head
    volume[-2:] = 0.0
    return volume


def test_tiny_model_loads_with_a_version(tiny_expert: MedGemmaExpert) -> None:
    assert tiny_expert.ready and tiny_expert.not_ready_reason is None
    assert len(tiny_expert.version) == 16 and int(tiny_expert.version, 16) >= 0
    again = MedGemmaExpert(tiny_expert.model_dir)
    assert again._fingerprint() == tiny_expert.version  # same folder, same version


def test_localise_on_the_tiny_model(tiny_expert: MedGemmaExpert) -> None:
    volume = _volume()
    found = tiny_expert.localise(volume, (3.0, 1.0, 1.0))
    assert isinstance(found, Localisation)
    assert found.queried_slices == (3, 6, 8)  # 3 bins over the head slices 2..9, never the air
    assert len(found.answers) == len(found.queried_slices) + 1 and all(isinstance(a, str) for a in found.answers)
    assert isinstance(found.findings, str) and len(found.findings) <= 300
    assert found.runtime_s > 0
    for box in found.boxes:
        assert box.slice_index in found.queried_slices
        assert 0 <= box.row_min <= box.row_max <= 63 and 0 <= box.col_min <= box.col_max <= 63
    assert tiny_expert.localise(volume, (3.0, 1.0, 1.0)).answers == found.answers  # greedy: repeatable


def test_localise_assembles_boxes_from_answers(tiny_expert: MedGemmaExpert, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[tuple[int, int], str]] = []
    answers = iter([
        '```json\n[{"box_2d": [250, 500, 500, 750], "label": "tumour"}]\n```',
        "[]",
        '[{"box_2d": [0, 0, 1000, 1000], "label": "tumour"}, {"box_2d": [100, 100, 2',
        "A large enhancing mass in the right hemisphere. It crosses the midline.",
    ])

    def fake_ask(picture: object, question: str) -> str:
        asked.append((picture.size, question))  # type: ignore[attr-defined]
        return next(answers)

    monkeypatch.setattr(tiny_expert, "_ask", fake_ask)
    volume = _volume()[:, :, :32]  # 64 rows, 32 columns
    found = tiny_expert.localise(volume, (3.0, 1.0, 1.0))
    assert [question for _, question in asked] == [BOX_PROMPT] * 3 + [FINDINGS_PROMPT]
    assert all(size == (32, 64) for size, _ in asked)
    assert [(b.slice_index, b.row_min, b.col_min, b.row_max, b.col_max) for b in found.boxes] == [
        (3, 16.0, 16.0, 32.0, 24.0), (8, 0.0, 0.0, 63.0, 31.0)]
    assert found.findings == "A large enhancing mass in the right hemisphere."

    answers = iter(['[{"box_2d": [100, 100, 300, 300]}]', "[]", "[]", "Finding."])
    asked.clear()
    result = tiny_expert.infer({IMAGE: volume, SPACING_MM: np.array([3, 1, 1], np.float32)}, {BOXES, FINDINGS})
    assert result.outputs[BOXES].dtype == np.float32
    np.testing.assert_allclose(result.outputs[BOXES], [[3.0, 6.4, 3.2, 19.2, 9.6]], rtol=1e-6)
    assert boxes_from_tensor(result.outputs[BOXES], volume.shape)[0].slice_index == 3  # valid SAM2 prompts
    assert result.outputs[FINDINGS].tolist() == [b"Finding."]


def test_infer_on_the_tiny_model(tiny_expert: MedGemmaExpert) -> None:
    inputs = {IMAGE: _volume(), SPACING_MM: np.array([3.0, 1.0, 1.0], np.float32)}
    result = tiny_expert.infer(inputs, {BOXES, FINDINGS})
    assert set(result.outputs) == {BOXES, FINDINGS}
    boxes, findings = result.outputs[BOXES], result.outputs[FINDINGS]
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
    assert findings.dtype == object and findings.shape == (1,) and isinstance(findings[0], bytes)
    findings[0].decode("utf-8")
    assert result.runtime_s > 0
    only_boxes = tiny_expert.infer(inputs, {BOXES})
    assert set(only_boxes.outputs) == {BOXES}


def test_tiny_model_refuses_masks_and_bad_tensors(tiny_expert: MedGemmaExpert) -> None:
    with pytest.raises(ExpertInputError, match="SAM2"):
        tiny_expert.predict(_volume(), (3.0, 1.0, 1.0))
    with pytest.raises(TensorError):
        tiny_expert.infer({IMAGE: np.zeros((8, 8), np.float32), SPACING_MM: np.ones(3, np.float32)}, {BOXES})
    with pytest.raises(TensorError):
        tiny_expert.infer({IMAGE: _volume(), SPACING_MM: np.array([0, 1, 1], np.float32)}, {BOXES})
