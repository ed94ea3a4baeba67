//! `--arch` and `--projector`, shared by every subcommand that builds a model, and the presets
//! an architecture brings (projector, learning rates, warm-up).

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::model::{parse_projector, Arch};

/// What an architecture defaults to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub projector: &'static str,
    pub lr_weights: f64,
    pub lr_biases: f64,
    pub warmup_epochs: f64,
}

impl Preset {
    /// The paper's recipe (ResNet-50 at batch 2048 over 1000 epochs).
    pub const PAPER: Preset = Preset {
        projector: "8192-8192-8192",
        lr_weights: 0.2,
        lr_biases: 0.0048,
        warmup_epochs: 10.0,
    };
    /// `tiny`'s: what learns over long runs on the demo data (the k-NN check's,
    /// scripts/knn-check.sh) and still shows the loss falling in the demo's 60 steps.
    pub const TINY: Preset = Preset {
        projector: "128-128",
        lr_weights: 5.0,
        lr_biases: 0.05,
        warmup_epochs: 5.0,
    };

    pub fn of(arch: Arch) -> Preset {
        match arch {
            Arch::Tiny => Preset::TINY,
            Arch::Resnet18 | Arch::Resnet50 => Preset::PAPER,
        }
    }
}

/// The command line's names for [`Arch`] (one enum for the model and the flags).
impl ValueEnum for Arch {
    fn value_variants<'a>() -> &'a [Self] {
        &[Arch::Tiny, Arch::Resnet18, Arch::Resnet50]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Arch::Tiny => "A 4-conv network for CPU demos and tests (64 features)",
            Arch::Resnet18 => "torchvision ResNet-18 without fc (512 features)",
            Arch::Resnet50 => "torchvision ResNet-50 without fc (2048 features), as in the paper",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

/// The model flags. A subcommand flattens them and sets its own default `--arch` and help texts
/// with `mut_arg`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value_t = Arch::Tiny)]
    pub arch: Arch,
    /// Projector sizes [default: the architecture's preset].
    #[arg(long)]
    pub projector: Option<String>,
}

/// [`ModelArgs`] resolved: the architecture, its projector sizes and its preset.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    pub arch: Arch,
    pub projector: Vec<usize>,
    pub preset: Preset,
}

impl ModelArgs {
    /// `arch` with its preset projector.
    pub fn preset(arch: Arch) -> ModelArgs {
        ModelArgs {
            arch,
            projector: None,
        }
    }

    /// The projector given, else the architecture's preset.
    pub fn resolve(&self) -> anyhow::Result<ModelChoice> {
        let preset = Preset::of(self.arch);
        let projector = parse_projector(self.projector.as_deref().unwrap_or(preset.projector))?;
        Ok(ModelChoice {
            arch: self.arch,
            projector,
            preset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_per_architecture() {
        let tiny = ModelArgs::preset(Arch::Tiny).resolve().unwrap();
        assert_eq!(tiny.projector, vec![128, 128]);
        assert_eq!(tiny.preset.lr_weights, 5.0);
        let r50 = ModelArgs::preset(Arch::Resnet50).resolve().unwrap();
        assert_eq!(r50.projector, vec![8192; 3]);
        assert_eq!(r50.preset, Preset::PAPER);
        let given = ModelArgs {
            arch: Arch::Resnet18,
            projector: Some("64-32".into()),
        };
        assert_eq!(given.resolve().unwrap().projector, vec![64, 32]);
    }

    #[test]
    fn arch_names_round_trip() {
        for &a in Arch::value_variants() {
            assert_eq!(Arch::from_str(a.name(), false).unwrap(), a);
            assert_eq!(Arch::parse(a.name()).unwrap(), a);
        }
    }
}
