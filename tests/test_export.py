"""`lwgen export tensorboard`: a projector folder from a checkpoint's gallery; `lwgen export` still releases."""
import shutil

import numpy as np
import pytest
from PIL import Image

from lwgen.cli import main
from lwgen.pipeline import DiffusionModel
from lwgen.projection import build_gallery, save_gallery
from lwgen.projection.tensorboard import sprite_layout


@pytest.fixture(scope="module")
def with_gallery(tiny_checkpoints, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "tiny-cosine"
    shutil.copytree(tiny_checkpoints["cosine"], folder)
    model = DiffusionModel.from_checkpoint(folder)
    save_gallery(folder, build_gallery(model, 1, 2, source=folder))
    return folder


def test_projector_files_agree(with_gallery, tmp_path, capsys):
    out = tmp_path / "projector"
    assert main(["export", "tensorboard", "--checkpoint", str(with_gallery), "--out", str(out)]) == 0
    assert "Projector tab" in capsys.readouterr().out
    from lwgen.projection import load_gallery

    gallery = load_gallery(with_gallery)
    n = len(gallery)
    meta = (out / "metadata.tsv").read_text().splitlines()
    assert meta[0].split("\t") == [*gallery.attributes, "condition", "seed"]
    assert len(meta) - 1 == n and all(len(r.split("\t")) == len(gallery.attributes) + 2 for r in meta)
    tensors = np.loadtxt(out / "tensors.tsv", delimiter="\t", ndmin=2)
    assert tensors.shape == (n, 3 * 16 * 16)
    per_row, thumb = sprite_layout(n, gallery.images.shape[-1])
    assert (per_row - 1) ** 2 < n <= per_row ** 2
    assert Image.open(out / "sprite.png").size == (per_row * thumb, per_row * thumb)

    from google.protobuf import text_format
    from tensorboard.plugins.projector import ProjectorConfig

    config = text_format.Parse((out / "projector_config.pbtxt").read_text(), ProjectorConfig())
    emb = config.embeddings[0]
    assert list(emb.sprite.single_image_dim) == [thumb, thumb]
    for name in (emb.tensor_path, emb.metadata_path, emb.sprite.image_path):
        assert (out / name).is_file(), name

    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(out)))
    plugin._update_configs()  # what TensorBoard does when the Projector tab asks for the runs
    assert list(plugin._configs["."].embeddings[0].tensor_shape) == [n, 3 * 16 * 16]


def test_sprite_shrinks_to_fit_8192_px():
    assert sprite_layout(1359, 64) == (37, 64)
    per_row, thumb = sprite_layout(40_000, 64)
    assert per_row == 200 and thumb == 40 and per_row * thumb <= 8192
    assert sprite_layout(5, 64, thumb=16) == (3, 16)
    with pytest.raises(ValueError, match="do not fit"):
        sprite_layout(70_000_000, 64)


def test_export_without_gallery_says_how_to_make_one(tiny_checkpoints, tmp_path, capsys):
    assert main(["export", "tensorboard", "--checkpoint", str(tiny_checkpoints["linear"]), "--out",
                 str(tmp_path / "p")]) == 2
    assert "lwgen gallery --checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tiny_checkpoints["linear"]), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "model.safetensors").is_file()
