"""WebDataset shards written by the `webdataset` package itself (`ShardWriter`) from the demo
folder: barlow's samples (shard, key, label, order) equal what `webdataset`'s own reader yields, and
the views made from the shards equal those made from the folder (same seed, same sample order)."""
import io
import json
import os
import subprocess
import tarfile

import pytest

from conftest import binary

wds = pytest.importorskip("webdataset")


def folder_samples(demo):
    """The folder's samples in barlow's order: classes sorted by name, files sorted in a class."""
    classes = sorted(d for d in os.listdir(demo) if (demo / d).is_dir())
    return [(label, demo / c / f) for label, c in enumerate(classes) for f in sorted(os.listdir(demo / c))]


@pytest.fixture(scope="module")
def shards(demo, tmp_path_factory):
    """The demo folder as shards of 10 samples: KEY.jpg (the file's bytes), KEY.cls, KEY.json."""
    out = tmp_path_factory.mktemp("shards")
    with wds.ShardWriter(str(out / "demo-%04d.tar"), maxcount=10, verbose=0) as sink:
        for i, (label, path) in enumerate(folder_samples(demo)):
            sink.write({"__key__": f"{path.parent.name}/{i:05d}_{path.stem}", "jpg": path.read_bytes(),
                        "cls": label, "json": {"label": label, "file": path.name}})
    names = sorted(os.listdir(out))
    return out, f"{out}/demo-{{0000..{len(names) - 1:04d}}}.tar"


def env(tmp_path):
    return {**os.environ, "BARLOW_CACHE_DIR": str(tmp_path / "cache")}


def barlow_scan(spec, tmp_path, *args):
    out = subprocess.run([binary("datasets"), "scan", "--wds", spec, "--json", *args], check=True,
                         capture_output=True, text=True, env=env(tmp_path))
    return json.loads(out.stdout)


def test_samples_keys_and_labels_equal_webdatasets_reader(shards, demo, tmp_path):
    folder, spec = shards
    theirs = [(os.path.basename(s["__url__"]), s["__key__"], int(s["cls"]))
              for s in wds.WebDataset(spec, shardshuffle=False)]
    for label_key in ["cls", "json:label"]:
        ours = barlow_scan(spec, tmp_path, "--label-key", label_key)
        assert ours["skipped"] == []
        assert [(os.path.basename(s["shard"]), s["key"], s["label"]) for s in ours["samples"]] == theirs
        assert ours["classes"] == 3 and ours["shards"] == 5
    assert [label for _, _, label in theirs] == [label for label, _ in folder_samples(demo)]
    # A folder of shards and a list file name the same samples; the second start reads the cache.
    again = barlow_scan(str(folder), tmp_path)
    assert [(s["key"], s["label"]) for s in again["samples"]] == [(k, c) for _, k, c in theirs]


def test_views_from_shards_equal_views_from_the_folder(shards, demo, tmp_path):
    _, spec = shards
    outs = {}
    for what, args in [("dir", ["--dir", str(demo)]), ("wds", ["--wds", spec])]:
        out = tmp_path / what
        subprocess.run([binary("loader"), "preview", *args, "--out", str(out), "--count", "6",
                        "--image-size", "32", "--seed", "3", "--epoch", "1"],
                       check=True, capture_output=True, env=env(tmp_path))
        outs[what] = {f: (out / f).read_bytes() for f in sorted(os.listdir(out))}
    assert len(outs["dir"]) == 6 * 4 + 1
    assert outs["dir"] == outs["wds"]


def test_bad_shards_are_refused_or_skipped_with_the_reason(shards, tmp_path):
    folder, _ = shards
    gz = tmp_path / "gz"
    gz.mkdir()
    with wds.ShardWriter(str(gz / "x-%04d.tar.gz"), maxcount=10, verbose=0) as sink:
        sink.write({"__key__": "a", "jpg": b"x", "cls": 0})
    err = subprocess.run([binary("loader"), "bench", "--wds", str(gz), "--seconds", "0.1"],
                         capture_output=True, text=True, env=env(tmp_path)).stderr
    assert "gunzip -k" in err and "x-0000.tar.gz" in err, err
    # A sample without a label and a truncated last member: left out, named with shard and key.
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in [("ok.jpg", b"j"), ("ok.cls", b"1"), ("nolabel.jpg", b"j"), ("cut.cls", b"0"),
                           ("cut.jpg", b"x" * 5000)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    data = bad.read_bytes()
    bad.write_bytes(data[:data.index(b"x" * 512) + 100])
    ours = barlow_scan(str(bad), tmp_path)
    assert [s["key"] for s in ours["samples"]] == ["ok"]
    reasons = {s["sample"].split("#")[1]: s["reason"] for s in ours["skipped"]}
    assert "no label" in reasons["nolabel"] and "truncated member cut.jpg" in reasons["cut"], reasons
