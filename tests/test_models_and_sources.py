"""Model resolution (embedded, local, hub, unsafe) and data-source resolution (mirror, download)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tunewise.config import load_config
from tunewise.core.errors import InputError
from tunewise.data import sources
from tunewise.models.load import load_classifier, resolve_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_embedded_model_resolves_to_the_packaged_folder():
    folder = Path(resolve_model("minilm-l6"))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def test_local_folder_loads_with_label_names(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir), ["a", "b", "c"])
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_folder_with_only_pickle_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InputError, match="pickle"):
        resolve_model(str(tmp_path))


def test_unreachable_hub_name_names_the_offline_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        load_classifier("someone/no-such-model-xyz", ["a", "b"])
    assert "minilm-l6" in str(err.value) and "local" in str(err.value)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_its_command(path):
    cfg = load_config(path)
    assert cfg.name and cfg.data.train
    first = path.read_text().splitlines()[0]
    assert first.startswith("# tunewise ") and path.name in first


def test_known_file_is_downloaded_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(
        sources.urllib.request,
        "urlopen",
        lambda url, timeout: io.BytesIO(b"text,category\nhi,greet\n"),
    )
    got = sources.resolve(tmp_path / "nowhere" / "banking77" / "train.csv", "data.train")
    assert got == tmp_path / "cache" / "banking77" / "train.csv"
    assert got.read_text().startswith("text,category")


def test_failed_download_names_the_data_dir_setting(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(InputError) as err:
        sources.resolve(tmp_path / "banking77" / "test.csv", "data.test")
    assert "TUNEWISE_DATA_DIR" in str(err.value) and "data.test" in str(err.value)
    assert not (tmp_path / "cache" / "banking77" / "test.csv").exists()


def test_unknown_missing_file_is_a_plain_not_found(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        sources.resolve(tmp_path / "mine.csv", "data.train")
