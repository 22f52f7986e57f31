"""OCI / docker-save images flattened into one read-only tree, from images built here."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cove.abi.errno import E, Errno
from cove.fs.node import S_IFDIR, S_IFREG, Inode, SetAttr
from cove.fs.oci import ImageError, OCIImageFS, open_oci_image
from cove.fs.tarfs import ArchiveError

MTIME = 1_700_000_000
Entry = tuple[tarfile.TarInfo, "bytes | None"]


# --- building layers and images -----------------------------------------------------
def reg(name: str, data: bytes = b"", mode: int = 0o644) -> Entry:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
    return ti, data


def dir_(name: str, mode: int = 0o755) -> Entry:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, MTIME
    return ti, None


def link(name: str, target: str, kind: bytes = tarfile.LNKTYPE) -> Entry:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = kind, target, MTIME
    return ti, None


def whiteout(path: str) -> Entry:
    head, _, name = path.rpartition("/")
    return reg(f"{head}/.wh.{name}" if head else f".wh.{name}")


def opaque(dirpath: str) -> Entry:
    return reg(f"{dirpath}/.wh..wh..opq")


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/srv"}}


def docker_save(path: Path, images: list[tuple[list[str], list[bytes]]], *,
                dedup_with_symlinks: bool = False) -> Path:
    """A ``docker save`` tarball (the classic layout: ``<id>/layer.tar``)."""
    manifest = []
    with tarfile.open(path, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        seen: dict[str, str] = {}
        for n, (tags, layers) in enumerate(images):
            cfg = json.dumps({**CONFIG, "tags": tags}).encode()
            add(f"{sha(cfg)}.json", cfg)
            names = []
            for i, blob in enumerate(layers):
                d = sha(blob + f"{n}/{i}".encode())  # a distinct directory per image
                if sha(blob) in seen and dedup_with_symlinks:
                    tf.addfile(link(f"{d}/layer.tar", f"../{seen[sha(blob)]}/layer.tar",
                                    tarfile.SYMTYPE)[0])
                else:
                    add(f"{d}/layer.tar", blob)
                    seen[sha(blob)] = d
                names.append(f"{d}/layer.tar")
            manifest.append({"Config": f"{sha(cfg)}.json", "RepoTags": tags, "Layers": names})
        add("manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout(root: Path, images: list[dict[str, Any]], *, nest: bool = False) -> Path:
    """An OCI image layout directory. Each image: ``layers`` (blobs), ``ref`` (ref.name
    annotation or None), ``platform`` (dict or None). With ``nest`` every image is
    put in one nested image index."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media: str, **extra: Any) -> dict[str, Any]:
        (blobs / sha(data)).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{sha(data)}", "size": len(data), **extra}

    descs = []
    for img in images:
        cfg = put(json.dumps(CONFIG).encode(), "application/vnd.oci.image.config.v1+json")
        layers = [put(b, "application/vnd.oci.image.layer.v1.tar") for b in img["layers"]]
        manifest = json.dumps({"schemaVersion": 2, "config": cfg, "layers": layers}).encode()
        extra: dict[str, Any] = {}
        if img.get("ref"):
            extra["annotations"] = {"org.opencontainers.image.ref.name": img["ref"]}
        if img.get("platform"):
            extra["platform"] = img["platform"]
        descs.append(put(manifest, "application/vnd.oci.image.manifest.v1+json", **extra))
    if nest:
        inner = json.dumps({"schemaVersion": 2, "manifests": descs}).encode()
        descs = [put(inner, "application/vnd.oci.image.index.v1+json",
                     annotations={"org.opencontainers.image.ref.name": "multi"})]
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": descs}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def tar_dir(root: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, p.relative_to(root).as_posix(), recursive=False)
    return out


def get(fs: OCIImageFS, path: str) -> Inode:
    node: Inode = fs.root
    for part in path.strip("/").split("/"):
        if part:
            node = node.lookup(part)
    return node


def exists(fs: OCIImageFS, path: str) -> bool:
    try:
        get(fs, path)
    except Errno as e:
        assert e.errno in (E.ENOENT, E.ENOTDIR)
        return False
    return True


def ls(fs: OCIImageFS, path: str) -> list[str]:
    return sorted(e.name for e in get(fs, path).readdir())


def walk(node: Inode, path: str = "") -> list[str]:
    out = [path or "/"]
    if node.stat().is_dir():
        for e in node.readdir():
            out += walk(node.lookup(e.name), f"{path}/{e.name}")
    return out


# --- the three-layer scenario ----------------------------------------------------------
L1 = tar_bytes([
    dir_("etc"), reg("etc/passwd", b"root:x:0:0\n"), reg("etc/hosts", b"127.0.0.1 old\n"),
    reg("etc/group", b"root:x:0:\n"),
    dir_("opt"), dir_("opt/a"), reg("opt/a/keep"), reg("opt/a/drop"), dir_("opt/a/sub"),
    reg("opt/a/sub/deep"),
    reg("data", b"data was a file"),
    dir_("var"), dir_("var/log"), reg("var/log/x", b"log"),
    dir_("hl"), reg("hl/orig", b"linked"),
    dir_("usr"), dir_("usr/bin"), reg("usr/bin/tool", b"v1", 0o755),
])
L2 = tar_bytes([
    whiteout("etc/hosts"),
    dir_("opt/a", mode=0o700), reg("opt/a/new", b"new"), opaque("opt/a"),  # marker after
    dir_("data"), reg("data/inner", b"data is a dir now"),
    reg("var", b"var is a file now"),
    link("hl/link2", "hl/orig"),  # a hard link to a file of the layer below
    reg("samelayer", b"kept"), whiteout("samelayer"),  # a whiteout hides lower layers only
    whiteout("never/existed"),
])
L3 = tar_bytes([
    whiteout("data"),
    reg("etc/hosts", b"127.0.0.1 new\n"),
    whiteout("usr/bin/tool"), reg("usr/bin/tool2", b"v2", 0o755),
])


def check_scenario(fs: OCIImageFS) -> None:
    assert ls(fs, "etc") == ["group", "hosts", "passwd"]
    assert get(fs, "etc/hosts").read(0, 100) == b"127.0.0.1 new\n"
    assert get(fs, "etc/passwd").read(0, 100) == b"root:x:0:0\n"
    assert ls(fs, "opt/a") == ["new"]  # opaque: keep, drop and sub/ are hidden
    assert get(fs, "opt/a").stat().mode == S_IFDIR | 0o700
    assert not exists(fs, "data")
    assert get(fs, "var").stat().mode & 0o170000 == S_IFREG
    assert get(fs, "var").read(0, 100) == b"var is a file now"
    orig, link2 = get(fs, "hl/orig"), get(fs, "hl/link2")
    assert orig is link2 and orig.stat().nlink == 2 and link2.read(0, 10) == b"linked"
    assert get(fs, "samelayer").read(0, 10) == b"kept"
    assert ls(fs, "usr/bin") == ["tool2"]
    assert not exists(fs, "never/existed")
    assert not any("/.wh." in p for p in walk(fs.root))
    assert fs.config["config"]["Cmd"] == ["/bin/sh"]


@pytest.mark.parametrize("gzip_layers", [False, True])
def test_docker_save_three_layers(tmp_path: Path, gzip_layers: bool) -> None:
    layers = [gzip.compress(b) if gzip_layers else b for b in (L1, L2, L3)]
    path = docker_save(tmp_path / "img.tar", [(["app:1"], layers)])
    with open_oci_image(path) as fs:
        check_scenario(fs)
        assert fs.names == ["app:1"] and len(fs.layers) == 3
        assert fs.statfs().fstype == 0x73717368 and fs.name == "tarfs"


def test_layers_and_image_compressed_by_magic_not_name(tmp_path: Path) -> None:
    # gzip layers named layer.tar, inside a gzipped docker save named .tar.
    inner = docker_save(tmp_path / "inner", [(["app:1"], [gzip.compress(L1), L2,
                                                           gzip.compress(L3)])])
    outer = tmp_path / "image.tar"
    outer.write_bytes(gzip.compress(inner.read_bytes()))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with open_oci_image(outer, tmpdir=str(tmpdir)) as fs:
        check_scenario(fs)
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout(tmp_path: Path, as_tar: bool) -> None:
    root = oci_layout(tmp_path / "layout", [{"layers": [L1, gzip.compress(L2), L3],
                                             "ref": "latest"}])
    path = tar_dir(root, tmp_path / "layout.tar") if as_tar else root
    fs = open_oci_image(path)
    check_scenario(fs)
    assert fs.names == ["latest"]


def test_reading_is_lazy(tmp_path: Path) -> None:
    big = bytes(range(256)) * (40 * 4096)  # 40 MiB
    layer = tar_bytes([reg("big", big), reg("small", b"s")])
    path = docker_save(tmp_path / "img.tar", [(["big:1"], [tar_bytes([reg("x")]), layer])])
    del big, layer
    tracemalloc.start()
    try:
        fs = open_oci_image(path)
        chunk = get(fs, "big").read(20 << 20, 4096)
        small = get(fs, "small").read(0, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunk == bytes(range(256)) * 16 and small == b"s"
    assert peak < 4 << 20, f"peak {peak} bytes for a 40 MiB layer"


# --- choosing among images -------------------------------------------------------------
def test_docker_save_reference_and_symlinked_layers(tmp_path: Path) -> None:
    base = tar_bytes([reg("base", b"shared base")])
    path = docker_save(tmp_path / "img.tar", [
        (["one:1"], [base, tar_bytes([reg("who", b"one")])]),
        (["two:1", "two:latest"], [base, tar_bytes([reg("who", b"two")])]),
    ], dedup_with_symlinks=True)
    assert get(open_oci_image(path), "who").read(0, 9) == b"one"  # the first by default
    for ref, who in [("one:1", b"one"), ("two:1", b"two"), ("two", b"two")]:
        fs = open_oci_image(path, ref)
        assert get(fs, "who").read(0, 9) == who
        assert get(fs, "base").read(0, 99) == b"shared base"  # via the symlinked layer.tar
    with pytest.raises(ImageError, match="no image tagged"):
        open_oci_image(path, "three:1")
    with pytest.raises(ImageError):
        open_oci_image(path, "one")  # one:latest does not exist


def test_oci_index_reference_and_platform(tmp_path: Path) -> None:
    def img(who: str, arch: str) -> dict[str, Any]:
        return {"layers": [tar_bytes([reg("who", who.encode())])],
                "platform": {"os": "linux", "architecture": arch}}

    multi = oci_layout(tmp_path / "multi", [img("arm", "arm64"), img("amd", "amd64")],
                       nest=True)
    assert get(open_oci_image(multi), "who").read(0, 9) == b"amd"
    assert get(open_oci_image(multi, "multi"), "who").read(0, 9) == b"amd"
    assert get(open_oci_image(multi, platform="linux/arm64"), "who").read(0, 9) == b"arm"
    with pytest.raises(ImageError, match="platform"):
        open_oci_image(multi, platform="linux/riscv64")
    with pytest.raises(ImageError, match="no image named"):
        open_oci_image(multi, "other")
    refs = oci_layout(tmp_path / "refs", [
        {"layers": [tar_bytes([reg("who", b"a")])], "ref": "a"},
        {"layers": [tar_bytes([reg("who", b"b")])], "ref": "b"},
    ])
    assert get(open_oci_image(refs, "b"), "who").read(0, 9) == b"b"
    assert get(open_oci_image(refs), "who").read(0, 9) == b"a"


# --- type changes across layers -------------------------------------------------------
def test_files_and_directories_replace_each_other(tmp_path: Path) -> None:
    l1 = tar_bytes([reg("f2d", b"file"), dir_("d2f"), reg("d2f/child"), dir_("merge"),
                    reg("merge/low"), link("d2f_link_src", "d2f/child"),
                    link("sym", "d2f", tarfile.SYMTYPE)])
    l2 = tar_bytes([dir_("f2d"), reg("f2d/x", b"x"), reg("d2f", b"now a file"),
                    dir_("merge"), reg("merge/up"), reg("sym", b"not a link")])
    l3 = tar_bytes([reg("f2d/y", b"y"), reg("merge/low", b"replaced")])
    fs = open_oci_image(docker_save(tmp_path / "i.tar", [(["t:1"], [l1, l2, l3])]))
    assert ls(fs, "f2d") == ["x", "y"]
    assert get(fs, "d2f").read(0, 99) == b"now a file"
    assert ls(fs, "merge") == ["low", "up"]  # a directory over a directory merges
    assert get(fs, "merge/low").read(0, 99) == b"replaced"
    assert get(fs, "sym").read(0, 99) == b"not a link"
    # d2f/child lost its name with d2f; its hard link keeps it alive.
    assert get(fs, "d2f_link_src").stat().nlink == 1


def test_whiteout_then_recreate_in_same_layer_and_opaque_new_dir(tmp_path: Path) -> None:
    l1 = tar_bytes([dir_("d"), reg("d/old", b"old"), reg("gone/sub/f")])
    l2 = tar_bytes([whiteout("d"), dir_("d"), reg("d/new", b"new"),  # replace the whole dir
                    opaque("fresh"), reg("fresh/x"),  # opaque dir with nothing below
                    whiteout("gone/sub")])
    fs = open_oci_image(docker_save(tmp_path / "i.tar", [(["t:1"], [l1, l2])]))
    assert ls(fs, "d") == ["new"]
    assert ls(fs, "fresh") == ["x"]
    assert ls(fs, "gone") == []


def test_every_change_is_erofs(tmp_path: Path) -> None:
    fs = open_oci_image(docker_save(tmp_path / "i.tar", [(["t:1"], [L1, L2, L3])]))
    f = get(fs, "etc/passwd")
    ops: list[Callable[[Inode], object]] = [
        lambda n: n.setattr(SetAttr(mode=0)), lambda n: n.create("x", 0o644, 0, 0),
        lambda n: n.mkdir("x", 0o755, 0, 0), lambda n: n.unlink("passwd"),
        lambda n: n.rmdir("etc"), lambda n: n.symlink("x", "y", 0, 0),
        lambda n: n.link("x", f), lambda n: n.rename("passwd", fs.root, "p"),
        lambda n: n.write(0, b"x"), lambda n: n.mknod("x", 0o010644, 0, 0, 0),
    ]
    for node in (fs.root, get(fs, "etc"), f):
        for op in ops:
            with pytest.raises(Errno) as ei:
                op(node)
            assert ei.value.errno == E.EROFS


# --- hostile images -------------------------------------------------------------------
def test_manifest_paths_cannot_leave_the_archive(tmp_path: Path) -> None:
    secret = tmp_path / "secret.tar"
    secret.write_bytes(tar_bytes([reg("SECRET", b"host file")]))
    for layer in ["../secret.tar", str(secret), "../../../../" + str(secret)]:
        path = tmp_path / "evil.tar"
        with tarfile.open(path, "w") as tf:
            data = json.dumps([{"Config": "c.json", "RepoTags": [], "Layers": [layer]}]).encode()
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
            ti = tarfile.TarInfo("c.json")
            ti.size = 2
            tf.addfile(ti, io.BytesIO(b"{}"))
        with pytest.raises(ImageError, match="missing"):
            open_oci_image(path)


def test_layout_directory_is_a_jail(tmp_path: Path) -> None:
    outside = tmp_path / "outside.tar"
    outside.write_bytes(tar_bytes([reg("SECRET", b"host file")]))
    before = outside.read_bytes()
    root = oci_layout(tmp_path / "layout", [{"layers": [L1]}])
    index = json.loads((root / "index.json").read_text())
    manifest_path = root / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_text())
    layer_blob = root / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    # A blob that is a symlink out of the layout is not followed out of it.
    layer_blob.unlink()
    layer_blob.symlink_to(outside)
    with pytest.raises(ImageError, match="missing"):
        open_oci_image(root)
    layer_blob.unlink()
    layer_blob.symlink_to("../../../outside.tar")
    with pytest.raises(ImageError, match="missing"):
        open_oci_image(root)
    # Digests that would make paths are refused outright.
    for digest in ["sha256:../../../outside.tar", "sha256/../../x:y", "../x", "sha256:a/b"]:
        manifest["layers"][0]["digest"] = digest
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(ImageError, match="digest"):
            open_oci_image(root)
    assert outside.read_bytes() == before


def test_malformed_images(tmp_path: Path) -> None:
    (tmp_path / "none.tar").write_bytes(tar_bytes([reg("hello", b"x")]))
    with pytest.raises(ImageError, match="neither"):
        open_oci_image(tmp_path / "none.tar")
    (tmp_path / "badjson.tar").write_bytes(tar_bytes([reg("manifest.json", b"{nope")]))
    with pytest.raises(ImageError, match="JSON"):
        open_oci_image(tmp_path / "badjson.tar")
    (tmp_path / "shape.tar").write_bytes(tar_bytes([reg("manifest.json", b'[{"Layers": 3}]')]))
    with pytest.raises(ImageError):
        open_oci_image(tmp_path / "shape.tar")
    (tmp_path / "empty.tar").write_bytes(tar_bytes([reg("manifest.json", b"[]")]))
    with pytest.raises(ImageError, match="no images"):
        open_oci_image(tmp_path / "empty.tar")
    layer_not_tar = docker_save(tmp_path / "nt.tar", [(["t:1"], [b"not a tar" * 100])])
    with pytest.raises(ArchiveError, match="not a tar"):
        open_oci_image(layer_not_tar)


def test_nothing_is_written_to_the_host(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_bytes(b"CANARY")
    layer = tar_bytes([reg("../canary/evil", b"x"), reg(f"{canary}/evil2", b"x"),
                       link("hl", str(canary / "keep")), link("hl2", "../canary/keep")])
    path = docker_save(tmp_path / "i.tar", [(["t:1"], [gzip.compress(layer)])])
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    fs = open_oci_image(path, tmpdir=str(tmpdir))
    assert sorted(os.listdir(canary)) == ["keep"]
    assert (canary / "keep").read_bytes() == b"CANARY"
    assert list(tmpdir.iterdir()) == []
    assert not exists(fs, "hl") and not exists(fs, "hl2")
    assert {s.name for s in fs.skipped} >= {"../canary/evil", "hl", "hl2"}
