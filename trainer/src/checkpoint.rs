//! Checkpoints: one safetensors file with every parameter and BatchNorm running statistic (under
//! the official names), the LARS momentum (`lars.mu.<name>`), and the training state as JSON in
//! the safetensors metadata (`barlow.state`). Written atomically: a temporary file in the same
//! directory, fsync, rename, fsync of the directory; a crash mid-save leaves the previous
//! checkpoint intact.
//!
//! [`export_torchvision`] writes the backbone alone with torchvision's names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, ..., plus `*.num_batches_tracked`), loadable with
//! `torchvision.models.resnet50().load_state_dict(sd, strict=False)` (only `fc.*` is missing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ::safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::lars::{Lars, LarsConfig};
use crate::model::{Arch, BarlowModel};
use crate::nn::NnDevice;

/// Metadata key of the JSON [`TrainState`].
pub const STATE_KEY: &str = "barlow.state";
/// File name of the checkpoint inside `--checkpoint-dir`.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Name prefix of the LARS momentum buffers (`lars.mu.<parameter name>`).
pub const MU_PREFIX: &str = "lars.mu.";

/// Everything besides the tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    pub arch: String,
    pub projector: Vec<usize>,
    /// Optimizer steps taken (the next step's index for the learning-rate schedule).
    pub step: u64,
    /// Epoch of the last batch trained on.
    pub epoch: u64,
    /// The loader's global step of the last batch trained on (the data position).
    pub loader_step: Option<u64>,
    /// The loader's seed (a restarted loader with the same seed reproduces the same batches).
    pub loader_seed: u64,
    pub batch_size: usize,
    pub image_hw: (usize, usize),
    /// Normalisation the model was trained with (from the ring header).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub lambd: f32,
    pub momentum: f64,
    pub eta: f64,
    pub weight_decay: f64,
}

impl TrainState {
    pub fn arch(&self) -> Result<Arch> {
        Arch::parse(&self.arch)
    }
    pub fn lars(&self) -> LarsConfig {
        LarsConfig {
            momentum: self.momentum,
            eta: self.eta,
            weight_decay: self.weight_decay,
        }
    }
}

/// Little-endian f32 bytes back to values.
pub fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// [`write_atomic`] with the temp file written by `write` (given its path).
fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        write(&tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves the model, the optimizer state and `state` to `path`, atomically.
pub fn save<D: NnDevice>(
    path: &Path,
    model: &BarlowModel<D>,
    opt: Option<&Lars<D>>,
    state: &TrainState,
) -> Result<()> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, p) in model.store.params.iter().enumerate() {
        owned.push((p.name.clone(), p.shape.clone(), f32_bytes(&p.t.as_vec())));
        if let Some(mu) = opt.and_then(|o| o.mu.get(i)).and_then(|m| m.as_ref()) {
            owned.push((
                format!("{MU_PREFIX}{}", p.name),
                p.shape.clone(),
                f32_bytes(&mu.as_vec()),
            ));
        }
    }
    let tensors: Vec<_> = owned
        .into_iter()
        .map(|(n, s, b)| (n, StDtype::F32, s, b))
        .collect();
    let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
    write_safetensors(path, &tensors, meta)
        .with_context(|| format!("saving checkpoint {}", path.display()))
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub type NamedBytes = (String, StDtype, Vec<usize>, Vec<u8>);

/// Writes `tensors` and the string metadata `meta` as one safetensors file, atomically (as
/// [`write_atomic`]).
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedBytes],
    meta: HashMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, dt, s, b)| {
            TensorView::new(*dt, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow!("{n}: {e:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // streamed to the file: no second copy of the tensors in memory
    write_atomic_with(path, |tmp| {
        ::safetensors::tensor::serialize_to_file(views, &Some(meta), tmp)
            .map_err(|e| anyhow!("writing {}: {e:?}", tmp.display()))
    })
}

/// f32 values as little-endian bytes (safetensors' layout).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads the training state of a checkpoint without building the model.
pub fn read_state(bytes: &[u8]) -> Result<TrainState> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("not a safetensors file: {e:?}"))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| anyhow!("not a trainer checkpoint (no {STATE_KEY} metadata)"))?;
    serde_json::from_str(json).context("reading the checkpoint's training state")
}

/// Loads a checkpoint onto `dev`: the model (arch and projector from the file), the LARS state
/// and the training state.
pub fn load<D: NnDevice>(path: &Path, dev: &D) -> Result<(BarlowModel<D>, Lars<D>, TrainState)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let ctx = || format!("loading checkpoint {}", path.display());
    let state = read_state(&bytes).with_context(ctx)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{e:?}"))
        .with_context(ctx)?;
    let mut model = BarlowModel::new(dev, state.arch().with_context(ctx)?, &state.projector, 0);
    let mut opt = Lars::new(&model.store, state.lars());
    for i in 0..model.store.params.len() {
        let (name, shape) = {
            let p = &model.store.params[i];
            (p.name.clone(), p.shape.clone())
        };
        let t = st
            .tensor(&name)
            .map_err(|_| anyhow!("tensor {name} is missing"))
            .with_context(ctx)?;
        if t.shape() != shape.as_slice() || t.dtype() != StDtype::F32 {
            bail!(
                "{}: tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                ctx(),
                t.dtype(),
                t.shape()
            );
        }
        model.store.set(i, floats(t.data()))?;
        if let Ok(mu) = st.tensor(&format!("{MU_PREFIX}{name}")) {
            let v = floats(mu.data());
            anyhow::ensure!(
                v.len() == model.store.params[i].len(),
                "{name}: momentum size"
            );
            let n = v.len();
            opt.mu[i] = Some(dev.tensor_from_vec(v, (n,)));
        }
    }
    Ok((model, opt, state))
}

/// Writes the backbone of checkpoint `ckpt` to `out` with torchvision's parameter names.
/// Returns the number of tensors written.
pub fn export_torchvision(ckpt: &Path, out: &Path) -> Result<usize> {
    let bytes = std::fs::read(ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
    let state = read_state(&bytes)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{e:?}"))?;
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| n.starts_with("backbone."))
        .cloned()
        .collect();
    names.sort();
    // PyTorch counts one BatchNorm forward per view per step
    let tracked = (2 * state.step as i64).to_le_bytes();
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for n in &names {
        let t = st.tensor(n).map_err(|e| anyhow!("{e:?}"))?;
        let short = n.trim_start_matches("backbone.").to_string();
        if let Some(bn) = short.strip_suffix(".running_mean") {
            views.push((
                format!("{bn}.num_batches_tracked"),
                TensorView::new(StDtype::I64, vec![], &tracked).map_err(|e| anyhow!("{e:?}"))?,
            ));
        }
        views.push((
            short,
            TensorView::new(t.dtype(), t.shape().to_vec(), t.data())
                .map_err(|e| anyhow!("{e:?}"))?,
        ));
    }
    let meta = HashMap::from([
        ("arch".to_string(), state.arch.clone()),
        ("step".to_string(), state.step.to_string()),
        ("source".to_string(), "barlow trainer export".to_string()),
    ]);
    let n = views.len();
    let bytes = ::safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| anyhow!("serialising: {e:?}"))?;
    write_atomic(out, &bytes)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::normalize_views;
    use crate::model::tests_support::random_views;
    use dfdx::prelude::*;
    use views::imagenet;

    pub(crate) fn state(model: &BarlowModel<Cpu>, step: u64) -> TrainState {
        TrainState {
            format: 1,
            arch: model.arch.name().into(),
            projector: model.projector.clone(),
            step,
            epoch: 0,
            loader_step: Some(step),
            loader_seed: 0,
            batch_size: 8,
            image_hw: (24, 24),
            mean: imagenet::MEAN,
            std: imagenet::STD,
            lambd: 0.0051,
            momentum: 0.9,
            eta: 0.001,
            weight_decay: 1.5e-6,
        }
    }

    #[test]
    fn save_load_gives_identical_outputs_and_continues_identically() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = BarlowModel::new(&dev, Arch::Tiny, &[32, 16], 4);
        let mut opt = Lars::new(&m.store, LarsConfig::default());
        let (n, h, w) = (8, 24, 24);
        let (a, b) = random_views(n, h, w, 3);
        let views =
            || normalize_views(&dev, &a, &b, n, h, w, imagenet::MEAN, imagenet::STD).unwrap();
        for _ in 0..2 {
            let (va, vb) = views();
            let mut g = m.loss_and_grads(va, vb, 0.0051).unwrap();
            opt.step(&mut m.store, &mut g.grads, 2.0, 0.1).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        save(&path, &m, Some(&opt), &state(&m, 2)).unwrap();
        let (mut m2, mut opt2, st) = load(&path, &dev).unwrap();
        assert_eq!(st, state(&m, 2));
        assert_eq!(
            m2.project(views().0).unwrap().as_vec(),
            m.project(views().0).unwrap().as_vec()
        );
        // one more step on both: identical parameters (momentum restored)
        for (mm, oo) in [(&mut m, &mut opt), (&mut m2, &mut opt2)] {
            let (va, vb) = views();
            let mut g = mm.loss_and_grads(va, vb, 0.0051).unwrap();
            oo.step(&mut mm.store, &mut g.grads, 2.0, 0.1).unwrap();
        }
        for (p, q) in m.store.params.iter().zip(&m2.store.params) {
            assert_eq!(p.t.as_vec(), q.t.as_vec(), "{}", p.name);
        }
        // no temp files left behind
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&path, &Cpu::default()).is_err());
    }

    #[test]
    fn export_uses_torchvision_names() {
        let dev = Cpu::default();
        let m = BarlowModel::new(&dev, Arch::Resnet18, &[16], 0);
        let dir = tempfile::tempdir().unwrap();
        let (c, e) = (
            dir.path().join("c.safetensors"),
            dir.path().join("r18.safetensors"),
        );
        save(&c, &m, None, &state(&m, 5)).unwrap();
        let n = export_torchvision(&c, &e).unwrap();
        let bytes = std::fs::read(&e).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        // torchvision resnet18 state_dict: 122 entries, minus fc.weight and fc.bias
        assert_eq!(n, 120);
        assert_eq!(st.names().len(), 120);
        assert_eq!(st.tensor("conv1.weight").unwrap().shape(), &[64, 3, 7, 7]);
        assert_eq!(
            st.tensor("layer1.0.bn1.running_mean").unwrap().shape(),
            &[64]
        );
        assert_eq!(
            st.tensor("layer4.1.conv2.weight").unwrap().shape(),
            &[512, 512, 3, 3]
        );
        let t = st.tensor("bn1.num_batches_tracked").unwrap();
        assert_eq!(
            (t.dtype(), t.data()),
            (StDtype::I64, &10i64.to_le_bytes()[..])
        );
        assert!(st
            .names()
            .iter()
            .all(|n| !n.starts_with("projector") && !n.starts_with("backbone")));
    }
}
