"""scripts/cluster: the SLURM batch script passes `bash -n` and shellcheck; the KubeRay RayJob manifest
validates against the RayJob CRD's schema, with unknown fields refused as kubectl's strict field
validation refuses them."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "scripts" / "cluster" / "slurm-matrix.sbatch"
RAYJOB = REPO / "scripts" / "cluster" / "rayjob.yaml"
SCHEMA = REPO / "tests" / "data" / "kuberay-rayjob-v1.schema.json"
KEEP = {"type", "required", "enum", "format", "x-kubernetes-int-or-string", "pattern", "minimum", "maximum"}


def prune_crd(schema: dict, doc) -> dict:
    """The CRD's openAPIV3Schema reduced to what `doc` uses (how tests/data/kuberay-rayjob-v1.schema.json
    was made from the full CRD): names, types and required fields along the manifest's paths; other
    subtrees keep their type only; Kubernetes' own types (pod templates, metadata) are plain objects."""
    def prune(s: dict, d, name=None) -> dict:
        if name in ("template", "metadata"):
            return {"type": "object"}
        out = {k: v for k, v in s.items() if k in KEEP}
        if "properties" in s:
            out["properties"] = {
                n: prune(p, d[n], n) if isinstance(d, dict) and n in d
                else {k: v for k, v in p.items() if k in ("type", "x-kubernetes-int-or-string")}
                for n, p in s["properties"].items()}
        if "items" in s:
            out["items"] = prune(s["items"], d[0] if isinstance(d, list) and d else None)
        if isinstance(s.get("additionalProperties"), dict):
            out["additionalProperties"] = {k: v for k, v in s["additionalProperties"].items() if k in KEEP}
        return out

    pruned = prune(schema, doc)
    pruned["properties"].pop("status", None)
    return pruned


def unknown_fields(schema: dict, doc, path: str = "") -> list[str]:
    """Keys of `doc` that the schema does not declare where it lists properties (strict field validation)."""
    out = []
    if isinstance(doc, dict) and "properties" in schema and schema.get("type") == "object":
        for k, v in doc.items():
            if k not in schema["properties"]:
                out.append(f"{path}.{k}")
            else:
                out += unknown_fields(schema["properties"][k], v, f"{path}.{k}")
    elif isinstance(doc, list) and "items" in schema:
        for i, v in enumerate(doc):
            out += unknown_fields(schema["items"], v, f"{path}[{i}]")
    return out


def errors(schema: dict, doc) -> list[str]:
    import jsonschema

    found = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    return found + [f"{p}: not a field of RayJob" for p in unknown_fields(schema, doc)]


def test_slurm_script_parses():
    proc = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(SBATCH, os.X_OK)


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed (apt-get install shellcheck)")
def test_slurm_script_passes_shellcheck():
    proc = subprocess.run(["shellcheck", "--severity=info", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_slurm_script_runs_matrix_with_the_head_address():
    text = SBATCH.read_text()
    assert 'matrix run "$spec" --address "$address" "$@"' in text
    assert "ray start --head" in text and 'ray start --block --address="$address"' in text


def test_rayjob_manifest_validates_against_the_crd_schema():
    schema = json.loads(SCHEMA.read_text())
    doc = yaml.safe_load(RAYJOB.read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    assert errors(schema, doc) == []
    assert "--address auto" in doc["spec"]["entrypoint"] and "output_dir=/shared/" in doc["spec"]["entrypoint"]
    mounts = [c["volumeMounts"] for c in doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]]
    mounts += [c["volumeMounts"] for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
               for c in g["template"]["spec"]["containers"]]
    assert all(any(m["mountPath"] == "/shared" for m in ms) for ms in mounts)  # every pod sees the runs


def test_the_schema_check_catches_mistakes():
    schema = json.loads(SCHEMA.read_text())
    doc = yaml.safe_load(RAYJOB.read_text())
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = 0  # must be a string
    del doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    doc["spec"]["shutdownAfterJobFinish"] = True  # misspelt
    found = errors(schema, doc)
    assert any("0 is not of type 'string'" in e for e in found)
    assert any("'groupName' is a required property" in e for e in found)
    assert any(e.startswith(".spec.shutdownAfterJobFinish:") for e in found)


@pytest.mark.skipif(not os.environ.get("KUBERAY_RAYJOB_CRD"),
                    reason="set KUBERAY_RAYJOB_CRD to KubeRay's ray.io_rayjobs.yaml to check against the whole CRD")
def test_rayjob_manifest_validates_against_the_whole_crd():
    crd = yaml.safe_load(Path(os.environ["KUBERAY_RAYJOB_CRD"]).read_text())
    full = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    doc = yaml.safe_load(RAYJOB.read_text())
    assert errors(full, doc) == []
    stored = {k: v for k, v in json.loads(SCHEMA.read_text()).items() if k != "$comment"}
    assert stored == prune_crd(full, doc)
