//! `loader augment` replays view parameters (the golden chain case must come out the same as the
//! library's view), refuses bad JSON and out-of-image boxes clearly; `loader preview` writes pairs,
//! their parameters and a contact sheet, and its JSON feeds `augment`.

mod common;

use std::path::Path;

fn loader() -> std::process::Command {
    common::command(env!("CARGO_BIN_EXE_loader"))
}

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../views/tests/golden")
        .join(name)
}

fn read_png(path: &Path) -> Vec<u8> {
    let mut img = decode::RgbImage::default();
    decode::decode_rgb(&std::fs::read(path).unwrap(), 1 << 30, &mut img).unwrap();
    img.pixels
}

#[test]
fn augment_replays_params_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("cases.json")).unwrap()).unwrap();
    let case = &cases["chain"][0];
    let params = dir.path().join("p.json");
    std::fs::write(&params, case["params"].to_string()).unwrap();
    let out = dir.path().join("view.png");
    // On Pillow's decoded pixels (a PNG) the replay is bit-exact with Pillow's chain.
    let st = loader()
        .args(["augment", "--image"])
        .arg(golden("src_ladybird_q90_pillow.png"))
        .arg("--params")
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        read_png(&out),
        read_png(&golden(case["output"].as_str().unwrap()))
    );

    std::fs::write(&params, "{\"crop\": {\"x\": 1}}").unwrap();
    let o = loader()
        .args(["augment", "--image"])
        .arg(golden("src_ladybird_q90.jpg"))
        .arg("--params")
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not valid view parameters"),
        "{err}"
    );

    let mut p = case["params"].clone();
    p["crop"]["x"] = 300.into();
    std::fs::write(&params, p.to_string()).unwrap();
    let o = loader()
        .args(["augment", "--image"])
        .arg(golden("src_ladybird_q90.jpg"))
        .arg("--params")
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("does not fit"), "{err}");
}

#[test]
fn preview_writes_pairs_params_and_a_contact_sheet() {
    let data = tempfile::tempdir().unwrap();
    let class = data.path().join("n01");
    std::fs::create_dir(&class).unwrap();
    for (i, f) in [
        "src_ladybird_q90.jpg",
        "progressive.jpg",
        "cmyk.jpg",
        "gray.jpg",
    ]
    .iter()
    .enumerate()
    {
        std::fs::copy(golden(f), class.join(format!("{i}.JPEG"))).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let st = loader()
        .args(["preview", "--count", "3", "--image-size", "48", "--dir"])
        .arg(data.path())
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "000_a.png",
        "000_b.png",
        "002_b.png",
        "000_a.json",
        "002_b.json",
        "contact_sheet.png",
    ] {
        assert!(out.path().join(f).exists(), "{f} missing");
    }
    // The preview's JSON replays to the same PNG.
    let printed = std::fs::read_to_string(out.path().join("000_a.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(json["size"], 48, "the view's size is in its JSON");
    json.as_object_mut().unwrap().remove("size");
    let params: views::params::ViewParams = serde_json::from_value(json).unwrap();
    let listing = loader()
        .args(["preview", "--count", "1", "--image-size", "48", "--dir"])
        .arg(data.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&listing.stdout);
    let name = line.split_whitespace().nth(1).unwrap().to_string();
    let image = data.path().join(&name);
    let replay = out.path().join("replay.png");
    let st = loader()
        .args(["augment", "--image-size", "48", "--image"])
        .arg(&image)
        .arg("--params")
        .arg(out.path().join("000_a.json"))
        .arg("--out")
        .arg(&replay)
        .status()
        .unwrap();
    assert!(st.success(), "{params:?}");
    assert_eq!(read_png(&replay), read_png(&out.path().join("000_a.png")));
}

/// `--recipe moco-v3` draws the same crops as Barlow Twins but resizes them with Pillow's
/// bilinear filter: the parameters say so, the pixels differ, and `loader augment` replays them.
#[test]
fn a_recipe_changes_the_filter_not_the_draws() {
    let data = tempfile::tempdir().unwrap();
    let class = data.path().join("n01");
    std::fs::create_dir(&class).unwrap();
    std::fs::copy(golden("src_ladybird_q90.jpg"), class.join("0.JPEG")).unwrap();
    let preview = |recipe: &str| {
        let out = tempfile::tempdir().unwrap();
        let st = loader()
            .args([
                "preview",
                "--count",
                "1",
                "--image-size",
                "48",
                "--recipe",
                recipe,
            ])
            .arg("--dir")
            .arg(data.path())
            .arg("--out")
            .arg(out.path())
            .status()
            .unwrap();
        assert!(st.success(), "preview --recipe {recipe}");
        let json = std::fs::read_to_string(out.path().join("000_a.json")).unwrap();
        let params: serde_json::Value = serde_json::from_str(&json).unwrap();
        (out, params)
    };
    let (bt_out, bt) = preview("barlow-twins");
    let (moco_out, moco) = preview("moco-v3");
    assert_eq!(moco["interpolation"], "bilinear");
    assert!(
        bt.get("interpolation").is_none(),
        "bicubic is left out: {bt}"
    );
    let mut same = moco.clone();
    same.as_object_mut().unwrap().remove("interpolation");
    assert_eq!(same["size"], 48);
    assert_eq!(same, bt, "the same draws");
    let (bt_png, moco_png) = (
        read_png(&bt_out.path().join("000_a.png")),
        read_png(&moco_out.path().join("000_a.png")),
    );
    assert_ne!(bt_png, moco_png, "another filter, other pixels");
    let replay = moco_out.path().join("replay.png");
    let st = loader()
        .args(["augment", "--image-size", "48", "--image"])
        .arg(class.join("0.JPEG"))
        .arg("--params")
        .arg(moco_out.path().join("000_a.json"))
        .arg("--out")
        .arg(&replay)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(read_png(&replay), moco_png);
    let bad = loader()
        .args(["preview", "--recipe", "simclr", "--out"])
        .arg(moco_out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("barlow-twins, moco-v3, dino, swav, dinov2"),
        "{err}"
    );
}

/// `--recipe dino` writes every view of a sample (2 global, then the local ones, each at its
/// size), and `loader augment` replays a local view at the size its JSON names.
#[test]
fn preview_shows_every_view_of_a_multi_crop_recipe_and_augment_replays_a_local_one() {
    let data = tempfile::tempdir().unwrap();
    let class = data.path().join("n01");
    std::fs::create_dir(&class).unwrap();
    std::fs::copy(golden("src_ladybird_q90.jpg"), class.join("0.JPEG")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let st = loader()
        .args([
            "preview",
            "--count",
            "1",
            "--recipe",
            "dino",
            "--image-size",
            "40",
        ])
        .args(["--local-size", "16", "--local-crops", "3", "--dir"])
        .arg(data.path())
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(st.success());
    let side = |f: &str| {
        let img = image_size(&out.path().join(f));
        assert_eq!(img.0, img.1, "{f} is square");
        img.0
    };
    assert_eq!((side("000_a.png"), side("000_b.png")), (40, 40));
    assert_eq!((side("000_c.png"), side("000_e.png")), (16, 16));
    assert!(!out.path().join("000_f.png").exists(), "3 local views");
    let replay = out.path().join("replay.png");
    let st = loader()
        .args(["augment", "--image"])
        .arg(class.join("0.JPEG"))
        .arg("--params")
        .arg(out.path().join("000_d.json"))
        .arg("--out")
        .arg(&replay)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(read_png(&replay), read_png(&out.path().join("000_d.png")));
    let sheet = image_size(&out.path().join("contact_sheet.png"));
    assert_eq!(
        sheet,
        (4 + 2 * 44 + 3 * 20, 48),
        "one row, every view at its size"
    );
}

fn image_size(path: &Path) -> (usize, usize) {
    let mut img = decode::RgbImage::default();
    decode::decode_rgb(&std::fs::read(path).unwrap(), 1 << 30, &mut img).unwrap();
    (img.width, img.height)
}
