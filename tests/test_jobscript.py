"""Batch settings: the typed options (queue, wallTime, memory, cpusPerWorker) in each batch
kind's own terms, defaults from the user's config file, and ``sharedapplier jobscript``.
(That the printed script is the one submitted is checked on the real Slurm test bed in
test_launchers.py.)"""
import json
import os
import sys

import numpy as np
import pytest
from conftest import read_raster, write_raster

from sharedapplier import applier, launchers, rioserrors
from sharedapplier.cmdline import main as cmdmain
from sharedapplier.launchers import settings
from sharedapplier.structures import ConcurrencyStyle

TYPED = {"queue": "work", "wallTime": "1:30:00", "memory": "4G", "cpusPerWorker": 2}


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    """Each test's own config file (absent until written), never the user's."""
    path = tmp_path / "config.toml"
    monkeypatch.setenv(settings.CONFIG_ENV, str(path))
    return path


def preview(kind, extra=None, workers=2, **kw):
    style = ConcurrencyStyle(computeWorkerKind=kind, numComputeWorkers=workers,
                             computeWorkerExtraParams=extra)
    return launchers.previewJobScripts(style, "ndvi", **kw)


@pytest.mark.parametrize("value,seconds", [("02:00:00", 7200), ("1:30:00", 5400),
                                           ("45:00", 2700), ("90", 90), (3600, 3600)])
def test_wall_time_forms(value, seconds):
    assert settings.BatchResources.fromParams({"wallTime": value}).wallSeconds == seconds


@pytest.mark.parametrize("value,mib", [("4G", 4096), ("4GB", 4096), ("4GiB", 4096),
                                       ("512M", 512), ("512mb", 512), ("1.5G", 1536),
                                       ("2T", 2 * 1024 ** 2), (2048, 2048), ("100", 100)])
def test_memory_forms(value, mib):
    assert settings.BatchResources.fromParams({"memory": value}).memoryMiB == mib


@pytest.mark.parametrize("name,value", [("wallTime", "two hours"), ("wallTime", 0),
                                        ("wallTime", "1:2:3:4"), ("memory", "lots"),
                                        ("memory", "0M"), ("memory", True),
                                        ("cpusPerWorker", 0), ("cpusPerWorker", 1.5),
                                        ("queue", "")])
def test_a_bad_typed_option_is_named_with_its_form(name, value):
    with pytest.raises(rioserrors.ParameterError, match=rf"\['{name}'\] = .* is not"):
        preview("CW_SLURM", {name: value})


def test_typed_options_in_slurm_terms_before_the_users_own_lines():
    text = preview("CW_SLURM", {**TYPED, "sbatchOptions": ["--time=3:00:00"]})["slurm_job.sh"]
    lines = text.splitlines()
    assert lines[5:10] == ["#SBATCH --partition=work", "#SBATCH --time=01:30:00",
                           "#SBATCH --mem=4096M", "#SBATCH --cpus-per-task=2",
                           "#SBATCH --time=3:00:00"]  # the user's own line comes last


def test_typed_options_in_pbs_terms_for_each_worker():
    scripts = preview("CW_PBS", TYPED, workers=3)
    assert list(scripts) == ["pbs_job_0.sh", "pbs_job_1.sh", "pbs_job_2.sh"]
    for i, text in enumerate(scripts.values()):
        assert "#PBS -q work\n#PBS -l walltime=01:30:00\n#PBS -l mem=4096mb\n" \
               "#PBS -l ncpus=2\n" in text
        assert text.splitlines()[-5].endswith(f"-i {i}")


def test_typed_options_in_aws_batch_terms():
    request = json.loads(preview("CW_AWSBATCH", {**TYPED, "jobDefinition": "def",
                                                 "region": "ap-southeast-2"}, workers=4)
                         ["submit_job request"])
    assert request["jobQueue"] == "work"
    assert request["timeout"] == {"attemptDurationSeconds": 5400}
    assert request["arrayProperties"] == {"size": 4}
    overrides = request["containerOverrides"]
    assert overrides["resourceRequirements"] == [{"type": "VCPU", "value": "2"},
                                                 {"type": "MEMORY", "value": "4096"}]
    assert overrides["command"][-2:] == ["--channaddrsecret", "ARN_OF_THE_RUN_S_SECRET"]


def test_the_run_directory_and_address_show_as_placeholders(tmp_path):
    text = preview("CW_SLURM", tempdir=str(tmp_path))["slurm_job.sh"]
    rundir = f"{tmp_path.resolve()}/sharedapplier_run_XXXXXXXX"
    assert f"#SBATCH -o {rundir}/worker_%a.log" in text
    assert f"--channaddrfile {rundir}/channel_address.json" in text
    assert not list(tmp_path.glob("sharedapplier_run_*"))  # nothing made
    unshared = ConcurrencyStyle(computeWorkerKind="CW_SLURM", numComputeWorkers=1,
                                haveSharedTemp=False)
    text = launchers.previewJobScripts(unshared)["slurm_job.sh"]
    assert "--channaddr HOST,PORT,KEY" in text


def test_the_config_file_gives_defaults_and_the_script_wins(config):
    config.write_text('[CW_SLURM]\nqueue = "long"\nwallTime = "12:00:00"\n'
                      'sbatchOptions = ["--account=rs42"]\n\n[CW_PBS]\nqueue = "normal"\n')
    text = preview("CW_SLURM", {"queue": "short"})["slurm_job.sh"]
    assert "#SBATCH --partition=short\n#SBATCH --time=12:00:00\n#SBATCH --account=rs42\n" \
        in text
    assert "#PBS -q normal\n" in preview("CW_PBS")["pbs_job_0.sh"]


def test_the_config_file_is_found_in_the_users_config_folder(tmp_path):
    env = {"HOME": "/home/me"}
    assert settings.configPath(env) == settings.Path("/home/me/.config/sharedapplier/"
                                                     "config.toml")
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    assert settings.configPath(env) == tmp_path / "sharedapplier" / "config.toml"
    env[settings.CONFIG_ENV] = "/etc/sa.toml"
    assert settings.configPath(env) == settings.Path("/etc/sa.toml")


def test_a_setting_no_launcher_reads_is_named_with_the_file(config):
    config.write_text('[CW_SLURM]\nqueue = "work"\npartition = "work"\n')
    with pytest.raises(rioserrors.ParameterError) as info:
        preview("CW_SLURM")
    text = str(info.value)
    assert str(config) in text and "sets partition for CW_SLURM" in text
    assert "sbatchOptions" in text and "wallTime" in text  # what it does read


def test_a_config_file_that_is_not_toml_is_named(config):
    config.write_text("[CW_SLURM\nqueue = work\n")
    with pytest.raises(rioserrors.ParameterError, match=str(config)):
        preview("CW_SLURM")


def test_a_run_takes_its_defaults_from_the_config_file(config, tmp_path):
    """A real CW_SUBPROC run whose workerCommand comes from the config file alone."""
    marker = tmp_path / "started"
    wrapper = tmp_path / "worker.sh"
    wrapper.write_text(f'#!/bin/bash\ntouch {marker}\nexec {sys.executable} -m sharedapplier '
                       'computeworker "$@"\n')
    wrapper.chmod(0o755)
    config.write_text(f'[CW_SUBPROC]\nworkerCommand = ["{wrapper}"]\n')
    arr = np.arange(2 * 100 * 90, dtype=np.int16).reshape(2, 100, 90)
    infiles = applier.FilenameAssociations()
    infiles.a = write_raster(tmp_path / "in.tif", arr)
    outfiles = applier.FilenameAssociations()
    outfiles.b = str(tmp_path / "out.tif")
    controls = applier.ApplierControls()
    controls.setOutputDriverName("HFA")
    controls.setWindowSize(32, 32)
    controls.setTempdir(str(tmp_path))
    controls.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind="CW_SUBPROC",
                                                  numComputeWorkers=2))

    def double(info, inputs, outputs):
        outputs.b = inputs.a * 2

    applier.apply(double, infiles, outfiles, controls=controls)
    assert marker.exists()
    assert np.array_equal(read_raster(outfiles.b), arr * 2)


def test_jobscript_command_prints_one_script_or_several_named(capsys):
    assert cmdmain.main(["jobscript", "slurm", "-n", "4", "--param", "wallTime=10:00",
                         "--param", 'sbatchOptions=["--qos=low"]']) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash\n#SBATCH --array=0-3\n")
    assert "#SBATCH --time=00:10:00\n#SBATCH --qos=low\n" in out
    assert cmdmain.main(["jobscript", "CW_PBS", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("==> pbs_job_0.sh <==\n#!/bin/bash\n") and "==> pbs_job_1.sh <==" in out


@pytest.mark.parametrize("args,message", [
    (["slurm", "--param", "wallTime"], "--param 'wallTime' is not KEY=VALUE"),
    (["slurm", "--param", "memory=lots"], "['memory'] = 'lots' is not an amount"),
    (["nope"], "CW_NOPE"),
    (["processes"], "CW_PROCESSES has no launcher"),
])
def test_jobscript_command_errors_are_one_line(args, message, capsys):
    assert cmdmain.main(["jobscript", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sharedapplier jobscript: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_the_batch_docs_name_the_command_and_the_config_variable():
    docs = os.path.join(os.path.dirname(__file__), "..", "docs", "batch.rst")
    with open(docs) as f:
        text = f.read()
    assert settings.CONFIG_ENV in text and "sharedapplier jobscript" in text
