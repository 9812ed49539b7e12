"""Several threads explaining with one shared model get the maps one thread gets alone."""

import threading

import numpy as np

from hyperfusion.explain.image import explain_image

JOBS = [  # hook-based (grad_cam, deeplift) mixed with gradient methods and a seeded one
    ("grad_cam", {}),
    ("deeplift", {}),
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 6}),
    ("smoothgrad", {"nt_samples": 3}),
    ("deeplift", {}),
    ("grad_cam", {"layer": "block3.add"}),
]


def _explain(env, job, subject):
    method, settings = job
    scan, record = env.subject(subject)
    return explain_image(
        env.predictor, "hyperfusion", scan, record, method, target=2, settings=settings, cache=False
    ).views


def test_concurrent_attributions_match_sequential(env):
    work = [(job, 0) for job in JOBS] + [(JOBS[0], 1), (JOBS[1], 1)]
    sequential = [_explain(env, job, subject) for job, subject in work]
    results: list = [None] * len(work)
    errors = []
    start = threading.Barrier(len(work))

    def worker(i):
        try:
            start.wait()  # all at once, so the hook-based methods overlap the others' forward passes
            results[i] = _explain(env, *work[i])
            # a plain prediction on the shared network while others explain must not fire their hooks
            env.predictor.predict(env.subject(i % 3)[0], env.subject(i % 3)[1])
        except Exception as exc:  # noqa: BLE001 - re-raised below in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (job, subject), seq, par in zip(work, sequential, results):
        np.testing.assert_allclose(par, seq, rtol=1e-5, atol=1e-8, err_msg=f"{job} subject {subject}")
    network = env.predictor.models["hyperfusion"].members[0].network
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in network.modules())
