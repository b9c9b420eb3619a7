"""The prompt reader: attribute values read from a prompt's sentence embedding, filled in where left at "any"."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lwgen.checkpoint import CheckpointError
from lwgen.conditioning import NULL
from lwgen.prompt_reader import READER_FILE, PromptReader, fit_reader, held_out_accuracy, table_rows, unreadable

VOCAB = {"shape": ["circle", "square", "triangle"], "color": ["red", "blue"]}


def _data(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings that are a shape direction plus a colour direction plus noise, and their label rows."""
    g = torch.Generator().manual_seed(seed)
    shape_dirs, color_dirs = torch.randn(3, 16, generator=g), torch.randn(2, 16, generator=g)
    labels = torch.stack([torch.arange(n) % 3, torch.arange(n) % 2], dim=1)
    text = shape_dirs[labels[:, 0]] + color_dirs[labels[:, 1]] + 0.1 * torch.randn(n, 16, generator=g)
    return F.normalize(text, dim=1), labels, torch.cat([shape_dirs, color_dirs])


def test_a_fitted_reader_reads_the_values_and_nothing_from_no_text():
    text, labels, _ = _data()
    reader = fit_reader(text, labels, VOCAB)
    probs = reader.probabilities(text)
    assert torch.equal(probs["shape"].argmax(1), labels[:, 0]) and torch.equal(probs["color"].argmax(1), labels[:, 1])
    readings = {r.attribute: r.value for r in reader.read(text[4])}  # row 4: shape 1, colour 0
    assert readings == {"shape": "square", "color": "red"}
    assert reader.read(torch.zeros(16)) == []
    assert reader.report["attributes"]["shape"] == {"rows": 60, "train_top1": 1.0}


def test_fill_sets_only_attributes_left_at_any_and_only_for_rows_with_text():
    text, labels, _ = _data()
    reader = fit_reader(text, labels, VOCAB)
    asked = torch.tensor([[NULL, NULL], [2, NULL], [NULL, NULL]])
    rows = torch.stack([text[4], text[4], torch.zeros(16)])
    filled = reader.fill(asked, ["shape", "color"], rows)
    assert filled.tolist() == [[1, 0], [2, 0], [NULL, NULL]]  # the user's triangle stays; no text, no reading
    values, used = reader.fill_values({"shape": "triangle", "color": "any"}, text[4])
    assert values == {"shape": "triangle", "color": "red"} and [u.attribute for u in used] == ["color"]
    unsure = reader.fill(asked, ["shape", "color"], rows, min_prob=1.0)  # nothing is surer than certain
    assert torch.equal(unsure, asked)


def test_rows_without_a_label_are_left_out_and_held_out_accuracy_counts_top1_and_top5():
    text, labels, _ = _data()
    labels[::3, 1] = NULL  # a third of the rows do not say their colour
    reader = fit_reader(text, labels, VOCAB)
    assert reader.report["attributes"]["color"]["rows"] == 40
    held_text, held_labels, _ = _data(seed=0)
    scores = held_out_accuracy(reader, held_text, held_labels, ["shape", "color"])
    assert scores["shape_top1"] == 1.0 and scores["shape_top5"] == 1.0 and scores["color_top1"] == 1.0
    wrong = held_labels.clone()
    wrong[:, 0] = (wrong[:, 0] + 1) % 3
    assert held_out_accuracy(reader, held_text, wrong, ["shape", "color"])["shape_top1"] == 0.0


def test_save_and_load_round_trip_and_refuse_another_vocabulary(tmp_path):
    text, labels, _ = _data()
    reader = fit_reader(text, labels, VOCAB)
    assert PromptReader.load(tmp_path) is None  # no file: no reader
    reader.save(tmp_path)
    back = PromptReader.load(tmp_path, VOCAB)
    assert back is not None and back.vocab == VOCAB and back.report == reader.report
    assert torch.allclose(back.probabilities(text)["shape"], reader.probabilities(text)["shape"])
    with pytest.raises(CheckpointError, match="values of 'color'"):
        PromptReader.load(tmp_path, {**VOCAB, "color": ["blue", "red"]})
    (tmp_path / READER_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="readable"):
        PromptReader.load(tmp_path)


def test_table_rows_take_the_text_column_or_the_values(tmp_path):
    (tmp_path / "a.csv").write_text("file,shape,color,split,text\n"
                                    "a.png,circle,red,train,a red ball\n"
                                    "b.png,square,green,train,\n"
                                    "c.png,triangle,blue,val,pointy\n")
    texts, labels = table_rows(tmp_path, "a.csv", "file", "train", VOCAB, "text")
    assert texts == ["a red ball", ""] and labels.tolist() == [[0, 0], [1, NULL]]  # green: not in the vocabulary
    texts, _ = table_rows(tmp_path, "a.csv", "file", "", VOCAB, "")
    assert texts == ["circle, red", "square, green", "triangle, blue"]


def test_attributes_the_words_do_not_tell_are_never_read():
    held = {"shape_top1": 0.9, "shape_majority": 0.4, "color_top1": 0.53, "color_majority": 0.5}
    assert unreadable(held, ["shape", "color"]) == ["color"]  # 53 % against a 70 % bar
    text, labels, _ = _data()
    fitted = fit_reader(text, labels, VOCAB)
    reader = PromptReader(VOCAB, fitted.weight, fitted.bias, {**fitted.report, "unreadable": ["color"]})
    assert [r.attribute for r in reader.read(text[4])] == ["shape"]
    assert reader.fill(torch.tensor([[NULL, NULL]]), ["shape", "color"], text[4:5]).tolist() == [[1, NULL]]


@pytest.mark.parametrize("name", ["emoji-cosine", "emoji-linear"])
def test_the_shipped_generators_carry_a_reader_of_their_own_values(name, capsys):
    from lwgen.checkpoint import read_config
    from lwgen.shipped import shipped_root

    folder = shipped_root() / name
    vocab = read_config(folder)["vocab"]
    reader = PromptReader.load(folder, vocab)  # refuses values other than the generator's
    assert reader is not None and reader.unreadable == {"style"}  # the words never say which artwork
    held = reader.report["held_out"]
    assert held["rows"] == 816 and held["subgroup_top5"] > held["subgroup_top1"] > held["subgroup_majority"]
    from lwgen.cli import main

    assert main(["info", "--checkpoint", str(folder)]) == 0
    assert "prompt reader: reads group, subgroup, skin_tone (on 816 held-out texts" in capsys.readouterr().out


def test_a_reading_no_combination_of_the_data_agrees_with_is_dropped():
    text, labels, _ = _data()
    reader = fit_reader(text, labels, VOCAB)
    reader.combinations = torch.tensor([[0, 0], [0, 1], [1, 1], [2, 0], [2, 1]])  # the data has no red square
    values, used = reader.fill_values({}, text[4])  # row 4 reads square and red: only the surer one is kept
    assert len(used) == 1 and values[used[0].attribute] == used[0].value
    values, used = reader.fill_values({"color": "red"}, text[4])  # the user's red vetoes "square"
    assert values == {"color": "red"} and used == []
    assert reader.fill(torch.tensor([[NULL, 0]]), ["shape", "color"], text[4:5]).tolist() == [[NULL, 0]]
