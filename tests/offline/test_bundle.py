"""The offline bundle (offline/) end to end, offline: wheels built here from tiny local projects, a bundle cut
into small parts, installed into a fresh venv; missing/corrupt parts, `--have`, source-only
packages, unsafe archives. pip never sees an index: its config is ignored and --no-index forced."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from offline.build import build
from offline.common import DEFAULT_PLATFORMS, BundleError, parse_size
from offline.install import install

REPO = Path(__file__).resolve().parents[2]
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
PART = 4096
# An in-tree PEP 517 backend writing the wheel with zipfile: no setuptools or wheel package needed.
BACKEND = """
import base64, hashlib, os, zipfile
from pathlib import Path


def _line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\\n"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{NAME}-{VERSION}.dist-info"
    meta = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"
    meta += "".join(f"Requires-Dist: {r}\\n" for r in REQUIRES)
    pure = str(TAG.endswith("-any")).lower()
    files = {
        f"{NAME}/__init__.py": Path(NAME, "__init__.py").read_bytes(),
        f"{info}/METADATA": meta.encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: {pure}\\nTag: {TAG}\\n".encode(),
    }
    files[f"{info}/RECORD"] = ("".join(_line(p, d) for p, d in files.items()) + f"{info}/RECORD,,\\n").encode()
    name = f"{NAME}-{VERSION}-{TAG}.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


@pytest.fixture(scope="module", autouse=True)
def offline_pip(tmp_path_factory):
    """Every pip run here (ours and the venv's) ignores pip config files and any index."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("PIP_")]:
            mp.delenv(key)
        mp.setenv("PIP_CONFIG_FILE", os.devnull)
        mp.setenv("PIP_NO_INDEX", "1")
        mp.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        mp.setenv("PIP_CACHE_DIR", str(tmp_path_factory.mktemp("pip-cache")))
        yield


def write_project(root: Path, name: str, version: str, requires=(), tag="py3-none-any") -> Path:
    """A minimal project that `pip wheel` builds offline with no build dependency."""
    project = root / f"{name}-{version}"
    (project / name).mkdir(parents=True)
    (project / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    constants = f"NAME, VERSION, REQUIRES, TAG = {name!r}, {version!r}, {list(requires)!r}, {tag!r}\n"
    (project / "backend.py").write_text(constants + BACKEND)
    (project / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return project


def pip_wheel(project: Path, dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*command, "-w", str(dest), str(project)], check=True, capture_output=True)


def write_sdist(project: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest / f"{project.name}.tar.gz", "w:gz") as tar:
        tar.add(project, arcname=project.name)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_args(**overrides) -> dict:
    args = {
        "python_version": PYTHON_VERSION,
        "platforms": list(DEFAULT_PLATFORMS),
        "no_deps": False,
        "have": None,
        "data": [],
        "models": [],
        "part_size": 1 << 20,
        "no_index": True,
    }
    return args | overrides


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """bundletestpkg 1.0 (needs bundletest_dep>=0.1) and bundletest_dep 0.2, as wheels."""
    root = tmp_path_factory.mktemp("projects")
    house = root / "wheelhouse"
    pip_wheel(write_project(root, "bundletestpkg", "1.0", ["bundletest-dep>=0.1"]), house)
    pip_wheel(write_project(root, "bundletest_dep", "0.2"), house)
    return house


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, Path]:
    """A small data folder (with a subfolder) and a tiny model folder."""
    root = tmp_path_factory.mktemp("sources")
    data, model = root / "tinydata", root / "tinymodel"
    (data / "sub").mkdir(parents=True)
    (data / "train.jsonl").write_text(
        "".join(json.dumps({"id": i, "dialogue": "hi " * i}) + "\n" for i in range(40))
    )
    (data / "sub" / "blob.bin").write_bytes(hashlib.sha256(b"seed").digest() * 200)  # 6400 bytes
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 20)
    (model / ".complete").write_text("")
    return data, model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, wheelhouse, sources) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build") / "bundle"
    data, model = sources
    args = build_args(data=[data], models=[model], part_size=PART, find_links=[wheelhouse])
    return out, build(out, ["bundletestpkg==1.0"], **args)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> str:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return str(venv / "bin" / "python")


def copy_bundle(out: Path, dest: Path) -> Path:
    """What a user carries to the node: manifest.json and the parts (not the wheels/ cache)."""
    dest.mkdir()
    for path in out.iterdir():
        if path.is_file():
            shutil.copy2(path, dest / path.name)
    return dest


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500k", 500 << 10),
        ("60M", 60 << 20),
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("4096", 4096),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "2X", "1..5G"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(BundleError, match="size"):
        parse_size(text)


def test_build_writes_capped_parts_with_right_hashes(bundle, sources):
    out, result = bundle
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in result.items() if k not in ("out", "up_to_date")} == manifest
    parts = manifest["parts"]
    assert len(parts) >= 3
    for part in parts:
        path = out / part["file"]
        assert path.stat().st_size == part["size"] <= PART
        assert sha(path) == part["sha256"]
    joined = b"".join((out / p["file"]).read_bytes() for p in parts)
    assert hashlib.sha256(joined).hexdigest() == manifest["archive"]["sha256"]
    assert len(joined) == manifest["archive"]["size"]
    assert sorted(p.name for p in out.glob("bundle.tar.part*")) == [p["file"] for p in parts]

    wheels = {w["name"]: w for w in manifest["wheels"]}
    assert {n: w["version"] for n, w in wheels.items()} == {"bundletestpkg": "1.0", "bundletest_dep": "0.2"}
    for wheel in wheels.values():
        assert sha(out / "wheels" / wheel["file"]) == wheel["sha256"]
    data, model = sources
    assert [e["name"] for e in manifest["data"]] == ["tinydata"]
    assert {f["path"]: f["sha256"] for f in manifest["data"][0]["files"]} == {
        "sub/blob.bin": sha(data / "sub" / "blob.bin"),
        "train.jsonl": sha(data / "train.jsonl"),
    }
    assert sorted(f["path"] for f in manifest["models"][0]["files"]) == [
        ".complete",
        "config.json",
        "model.safetensors",
    ]
    with tarfile.open(fileobj=io.BytesIO(joined)) as tar:
        names = set(tar.getnames())
    assert names == {f"wheels/{w['file']}" for w in wheels.values()} | {
        "data/tinydata/train.jsonl",
        "data/tinydata/sub/blob.bin",
        "models/tinymodel/.complete",
        "models/tinymodel/config.json",
        "models/tinymodel/model.safetensors",
    }
    assert manifest["target"]["abi"] == "cp" + PYTHON_VERSION.replace(".", "")
    assert manifest["install_command"] == "PYTHONPATH=. python3 scripts/bundle.py install bundle"


def test_rebuild_with_same_inputs_changes_nothing(bundle, wheelhouse, sources):
    out, first = bundle
    before = snapshot(out)
    data, model = sources
    args = build_args(data=[data], models=[model], part_size=PART, find_links=[wheelhouse])
    again = build(out, ["bundletestpkg==1.0"], **args)
    assert again["up_to_date"] and again["parts"] == first["parts"]
    assert snapshot(out) == before  # no part, wheel or manifest rewritten


def test_install_into_fresh_venv_then_again_is_a_no_op(bundle, venv_python, sources, tmp_path):
    out, _ = bundle
    carried, dest = copy_bundle(out, tmp_path / "carried"), tmp_path / "dest"
    summary = install(carried, python=venv_python, dest=dest)
    assert sorted(summary["wheels_installed"]) == ["bundletest_dep==0.2", "bundletestpkg==1.0"]
    check = "import bundletestpkg, bundletest_dep; print(bundletestpkg.VERSION, bundletest_dep.VERSION)"
    assert subprocess.run([venv_python, "-c", check], capture_output=True, text=True).stdout.split() == [
        "1.0",
        "0.2",
    ]
    data, model = sources
    for source, landed in (
        (data, dest / "data" / "tinydata"),
        (model, dest / ".cache" / "models" / "tinymodel"),
    ):
        files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(landed) for p in landed.rglob("*") if p.is_file())
        assert all((landed / f).read_bytes() == (source / f).read_bytes() for f in files)
    assert summary["files_written"] == 5 and summary["changed"]
    assert [p.name for p in carried.iterdir() if p.name.startswith(".")] == []  # scratch cleaned up

    site = Path(venv_python).parent.parent / "lib"
    before = snapshot(dest), snapshot(site)
    again = install(carried, python=venv_python, dest=dest)
    assert not again["changed"] and again["wheels_installed"] == [] and again["files_written"] == 0
    assert sorted(again["wheels_already_installed"]) == ["bundletest_dep==0.2", "bundletestpkg==1.0"]
    assert (snapshot(dest), snapshot(site)) == before


def test_missing_part_is_named(bundle, venv_python, tmp_path):
    carried = copy_bundle(bundle[0], tmp_path / "carried")
    (carried / "bundle.tar.part002").unlink()
    with pytest.raises(BundleError, match=r"bundle\.tar\.part002 \(missing\): re-copy it") as err:
        install(carried, python=venv_python, dest=tmp_path / "dest")
    assert "part001" not in str(err.value) and "\n" not in str(err.value)


def test_corrupt_part_is_named_before_anything_is_written(bundle, venv_python, tmp_path):
    carried = copy_bundle(bundle[0], tmp_path / "carried")
    part = carried / "bundle.tar.part003"
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"bundle\.tar\.part003 \(corrupt: sha256 mismatch\): re-copy it"):
        install(carried, python=venv_python, dest=tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_gzip_data_only_bundle_and_a_changed_file_on_the_node(sources, tmp_path):
    data, _ = sources
    out, dest = tmp_path / "bundle", tmp_path / "dest"
    result = build(out, [], **build_args(data=[data], part_size=PART, compress="gzip"))
    assert result["parts"][0]["file"] == "bundle.tar.gz.part001" and result["wheels"] == []
    assert (out / "bundle.tar.gz.part001").read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    assert install(out, dest=dest)["files_written"] == 2  # no wheels: no interpreter is touched
    landed = dest / "data" / "tinydata" / "train.jsonl"
    assert landed.read_bytes() == (data / "train.jsonl").read_bytes()

    landed.write_text("edited on the node\n")
    with pytest.raises(BundleError, match=r"train\.jsonl differs from the bundle's copy: .*--overwrite"):
        install(out, dest=dest)
    assert install(out, dest=dest, overwrite=True)["files_written"] == 1
    assert landed.read_bytes() == (data / "train.jsonl").read_bytes()


def test_xz_bundle_carries_stored_wheels_that_install_alike(wheelhouse, sources, tmp_path):
    data, _ = sources
    out, venv = tmp_path / "bundle", tmp_path / "venv"
    args = build_args(data=[data], part_size=PART, find_links=[wheelhouse], compress="xz")
    result = build(out, ["bundletestpkg==1.0"], **args)
    assert result["archive"]["compression"] == "xz" and result["parts"][0]["file"] == "bundle.tar.xz.part001"
    assert (out / "bundle.tar.xz.part001").read_bytes()[:6] == b"\xfd7zXZ\x00"  # xz magic
    joined = b"".join((out / p["file"]).read_bytes() for p in result["parts"])
    with tarfile.open(fileobj=io.BytesIO(joined), mode="r:xz") as tar:
        for wheel in result["wheels"]:
            packed = zipfile.ZipFile(io.BytesIO(tar.extractfile(f"wheels/{wheel['file']}").read()))
            with zipfile.ZipFile(out / "wheels" / wheel["file"]) as downloaded:
                assert {i.compress_type for i in downloaded.infolist()} == {zipfile.ZIP_DEFLATED}
                assert {i.filename: downloaded.read(i) for i in downloaded.infolist()} == {
                    i.filename: packed.read(i) for i in packed.infolist()
                }
            assert {i.compress_type for i in packed.infolist()} == {zipfile.ZIP_STORED}

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    summary = install(
        copy_bundle(out, tmp_path / "carried"), python=str(venv / "bin" / "python"), dest=tmp_path
    )
    assert sorted(summary["wheels_installed"]) == ["bundletest_dep==0.2", "bundletestpkg==1.0"]
    check = [str(venv / "bin" / "python"), "-c", "import bundletestpkg; print(bundletestpkg.VERSION)"]
    assert subprocess.run(check, capture_output=True, text=True).stdout.split() == ["1.0"]
    assert (tmp_path / "data" / "tinydata" / "train.jsonl").read_bytes() == (
        data / "train.jsonl"
    ).read_bytes()


def test_have_leaves_out_wheels_the_node_has_at_that_version(wheelhouse, tmp_path, caplog):
    freeze = tmp_path / "node-freeze.txt"
    freeze.write_text("BundleTest.Dep==0.2\nbundletestpkg==0.9\nother==1.0\n")  # PEP 503 names
    out = tmp_path / "bundle"
    with caplog.at_level("INFO", logger="bundle"):
        result = build(out, ["bundletestpkg==1.0"], **build_args(have=freeze, find_links=[wheelhouse]))
    assert [(w["name"], w["version"]) for w in result["wheels"]] == [("bundletestpkg", "1.0")]
    assert result["skipped"] == [{"name": "bundletest_dep", "version": "0.2"}]
    assert "bundletest_dep==0.2" in caplog.text
    assert not list((out / "wheels").glob("bundletest_dep*"))  # never fetched


def test_source_only_packages_become_wheels_when_pure(tmp_path):
    links = tmp_path / "links"
    write_sdist(write_project(tmp_path, "bundletestsrc", "1.0"), links)
    result = build(tmp_path / "bundle", ["bundletestsrc==1.0"], **build_args(find_links=[links]))
    assert [w["file"] for w in result["wheels"]] == ["bundletestsrc-1.0-py3-none-any.whl"]

    native_tag = "cp{0}-cp{0}-linux_x86_64".format(PYTHON_VERSION.replace(".", ""))
    write_sdist(write_project(tmp_path, "bundletestnative", "1.0", tag=native_tag), links)
    with pytest.raises(
        BundleError, match=r"bundletestnative==1.0 is published only as source and needs compiling"
    ):
        build(tmp_path / "bundle2", ["bundletestnative==1.0"], **build_args(find_links=[links]))


def fake_bundle(root: Path, members: dict[str, bytes], listed: list[str]) -> Path:
    """A one-part bundle whose tar holds `members` while its manifest lists data files `listed`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    raw, digest = buf.getvalue(), hashlib.sha256(buf.getvalue()).hexdigest()
    root.mkdir()
    (root / "bundle.tar.part001").write_bytes(raw)
    files = [{"path": p, "size": 1, "mtime": 0, "sha256": hashlib.sha256(b"x").hexdigest()} for p in listed]
    manifest = {
        "format": 1,
        "target": {"python_version": PYTHON_VERSION},
        "wheels": [],
        "data": [{"name": "d", "size": len(files), "files": files}],
        "models": [],
        "archive": {"file": "bundle.tar", "size": len(raw), "sha256": digest},
        "parts": [{"file": "bundle.tar.part001", "size": len(raw), "sha256": digest}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize(
    ("members", "listed", "message"),
    [
        ({"data/d/a.txt": b"x"}, ["../../escape.txt"], "unsafe path"),
        ({"/tmp/escape.txt": b"x", "data/d/a.txt": b"x"}, ["a.txt"], "unsafe path"),
        ({"data/d/../../escape.txt": b"x", "data/d/a.txt": b"x"}, ["a.txt"], "unsafe path"),
        ({"data/d/extra.txt": b"x", "data/d/a.txt": b"x"}, ["a.txt"], "unexpected member"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, members, listed, message):
    carried = fake_bundle(tmp_path / "carried", members, listed)
    with pytest.raises(BundleError, match=message):
        install(carried, python=sys.executable, dest=tmp_path / "dest")
    assert not list(tmp_path.rglob("escape.txt")) and not list(tmp_path.rglob("extra.txt"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "scripts/bundle.py", *args], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_cli_exit_code_2_with_one_error_line(tmp_path):
    proc = run_cli("install", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "manifest.json not found" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_cli_dry_run_prints_the_pip_commands_for_the_node(tmp_path):
    proc = run_cli(
        "build", "--out", str(tmp_path / "b"), "vllm==0.26.0", "--python-version", "3.12", "--dry-run"
    )
    assert proc.returncode == 0, proc.stderr
    resolve, download = proc.stdout.splitlines()
    target = "--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312"
    platforms = " ".join(f"--platform {p}" for p in DEFAULT_PLATFORMS)
    assert "-m pip install --dry-run --quiet --report - --ignore-installed" in resolve
    assert f"{target} {platforms}" in resolve and resolve.endswith(" vllm==0.26.0")
    assert f"-m pip download --no-deps {target} {platforms}" in download
    assert not (tmp_path / "b").exists()
