"""Checks on images/*/Dockerfile, images/requirements.py and the build script."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gfm import settings

REPO = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"

# The extra of pyproject.toml each image installs.
IMAGE_EXTRAS = {
    "base": "pipeline",
    "featurize": "featurize",
    "train": "train",
    "serve": "serve",
}

_spec = importlib.util.spec_from_file_location(
    "image_requirements", REPO / "images" / "requirements.py"
)
image_requirements = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(image_requirements)


def _dockerfile(kind: str) -> str:
    return (REPO / "images" / kind / "Dockerfile").read_text(encoding="utf-8")


def test_every_image_kind_has_a_dockerfile():
    kinds = sorted(p.parent.name for p in (REPO / "images").glob("*/Dockerfile"))

    assert kinds == sorted(settings.IMAGE_KINDS)
    assert sorted(IMAGE_EXTRAS) == sorted(settings.IMAGE_KINDS)


@pytest.mark.parametrize("kind", settings.IMAGE_KINDS)
def test_dockerfile_passes_hadolint(kind):
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(REPO / "images" / kind / "Dockerfile")],
        capture_output=True, text=True, check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("kind", settings.IMAGE_KINDS)
def test_dockerfile_pins_base_images(kind):
    bases = re.findall(r"^FROM\s+(\S+)", _dockerfile(kind), flags=re.MULTILINE)

    assert bases, f"images/{kind}/Dockerfile has no FROM"
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert name, f"{base} has no tag"
        assert tag != "latest"
        assert re.search(r"\d+\.\d+", tag), f"{base} is not pinned to a version"


@pytest.mark.parametrize("kind", settings.IMAGE_KINDS)
def test_dockerfile_runs_as_non_root(kind):
    users = re.findall(r"^USER\s+(\S+)", _dockerfile(kind), flags=re.MULTILINE)

    assert users, f"images/{kind}/Dockerfile never sets USER"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0")


@pytest.mark.parametrize("kind", settings.IMAGE_KINDS)
def test_dockerfile_installs_matching_extra(kind):
    text = _dockerfile(kind)
    extra = IMAGE_EXTRAS[kind]

    assert re.search(rf"requirements\.py pyproject\.toml {extra}\b", text)
    assert "--no-deps ." in text
    assert "kfp==${KFP_VERSION}" in text


def test_featurize_image_keeps_vllm_torch():
    text = _dockerfile("featurize")

    assert "FROM vllm/vllm-openai:v" in text
    assert "--exclude torch" in text


def test_train_image_installs_pyg_lib():
    text = _dockerfile("train")

    assert "pyg-lib" in text
    assert "data.pyg.org/whl/torch-${TORCH_VERSION}+${CUDA}.html" in text


def test_requirements_expand_extra_and_core():
    lines = image_requirements.requirements(REPO / "pyproject.toml", ["serve"], set())
    names = [image_requirements._name(line) for line in lines]

    assert "numpy" in names
    assert "kserve" in names
    assert "kfp" not in names
    assert len(names) == len(set(names))


def test_requirements_exclude_torch():
    lines = image_requirements.requirements(
        REPO / "pyproject.toml", ["featurize"], {"torch"}
    )
    names = {image_requirements._name(line) for line in lines}

    assert "torch" not in names
    assert "sentence-transformers" in names


def test_requirements_expand_self_reference(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "gfm"\nversion = "0"\ndependencies = ["numpy>=1"]\n'
        '[project.optional-dependencies]\n'
        'a = ["pandas>=2"]\nb = ["scipy"]\nall = ["gfm[a,b]", "pytest"]\n',
        encoding="utf-8",
    )

    lines = image_requirements.requirements(pyproject, ["all"], set())

    assert lines == ["numpy>=1", "pandas>=2", "scipy", "pytest"]


def test_requirements_unknown_extra_raises():
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        image_requirements.requirements(REPO / "pyproject.toml", ["gpu"], set())


def test_build_script_names_images_like_settings(tmp_path, monkeypatch):
    # A stand-in for docker that records its arguments and drains the
    # build context from stdin.
    log = tmp_path / "docker.log"
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\ncat > /dev/null\n', encoding="utf-8")
    fake.chmod(0o755)
    env = dict(
        os.environ,
        DOCKER=str(fake),
        GFM_IMAGE_REGISTRY="registry.example/team/",
        GFM_IMAGE_TAG="t1",
    )
    monkeypatch.setenv("GFM_IMAGE_REGISTRY", "registry.example/team/")
    monkeypatch.setenv("GFM_IMAGE_TAG", "t1")

    result = subprocess.run(
        [str(REPO / "scripts" / "build_images.sh"), "--push", "base", "serve"],
        capture_output=True, text=True, env=env, check=False, cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    assert len(calls) == 4
    assert f"--tag {settings.image('base')} -" in calls[0]
    assert "--file images/base/Dockerfile" in calls[0]
    assert calls[1] == f"push {settings.image('base')}"
    assert f"--tag {settings.image('serve')} -" in calls[2]
    assert calls[3] == f"push {settings.image('serve')}"


def test_build_script_rejects_unknown_kind(tmp_path):
    result = subprocess.run(
        [str(REPO / "scripts" / "build_images.sh"), "gpu"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env=dict(os.environ, DOCKER=str(tmp_path / "missing-docker")),
    )

    assert result.returncode == 2
    assert "unknown argument 'gpu'" in result.stderr


@pytest.mark.parametrize("kind", settings.IMAGE_KINDS)
def test_dockerfile_kfp_matches_compiling_sdk(kind):
    # The compiled command runs `pip install kfp==<SDK version>` first; with
    # that version already in the image, pip needs no network.
    import kfp

    (version,) = re.findall(r"^ARG KFP_VERSION=(\S+)$", _dockerfile(kind), re.MULTILINE)

    assert version == kfp.__version__
