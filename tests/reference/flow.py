"""Run by the reference ``learnware`` package's own interpreter (.venv-reference), never by
Wharf's: the reference used as its users use it, against a running Wharf.

    python flow.py HOST EMAIL TOKEN WORKDIR WHARF_BUILT_ID WHARF_BUILT_ZIP WHARF_BUILT_X

It builds a package with the reference's pickle-model template, uploads it with
``LearnwareClient``, waits for Wharf's check, searches for it with an RKME the reference
computes, downloads, loads and runs it, updates and deletes it; then loads a package Wharf
built (the zip as written, and as downloaded from Wharf) and runs it. Every step asserts what
the reference would need; the facts the test checks are written to WORKDIR/result.json.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import zipfile

import numpy as np

host, email, token, workdir, built_id, built_zip, built_x = sys.argv[1:8]
os.environ["LEARNWARE_STORAGE_PATH"] = os.path.join(workdir, "learnware-storage")
os.chdir(workdir)

from learnware.client import LearnwareClient  # noqa: E402
from learnware.client.learnware_client import SemanticSpecificationKey  # noqa: E402
from learnware.learnware import get_learnware_from_dirpath  # noqa: E402
from learnware.market import BaseUserInfo  # noqa: E402
from learnware.specification import generate_semantic_spec, generate_stat_spec  # noqa: E402
from learnware.tests.templates import (  # noqa: E402
    LearnwareTemplate,
    PickleModelTemplate,
    StatSpecTemplate,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402

result: dict = {}


def step(name: str) -> None:
    print(f"[reference] {name}", flush=True)


# A developer's learnware, made with the reference's template (its learnware.yaml holds
# !!python/tuple for the shapes).
rng = np.random.default_rng(0)
centre = np.linspace(-1, 1, 20)
X = centre + rng.normal(size=(400, 20))
y = (X[:, 0] > centre[0]).astype(int) + (X[:, 1] > centre[1]).astype(int)
model = LogisticRegression(max_iter=500).fit(X, y)
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
generate_stat_spec(type="table", X=X).save("stat.json")
LearnwareTemplate.generate_learnware_zipfile(
    learnware_zippath="template.zip",
    model_template=PickleModelTemplate(
        pickle_filepath="model.pkl",
        model_kwargs={
            "input_shape": (20,),
            "output_shape": (3,),
            "predict_method": "predict_proba",
        },
    ),
    stat_spec_template=StatSpecTemplate(filepath="stat.json", type="RKMETableSpecification"),
    requirements=["scikit-learn"],
)
manifest = zipfile.ZipFile("template.zip").read("learnware.yaml").decode()
result["template_has_tuple_tags"] = "!!python/tuple" in manifest
semantic = generate_semantic_spec(
    name="reference template model",
    description="A logistic regression in the reference's pickle-model template.",
    data_type="Table",
    task_type="Classification",
    library_type="Scikit-learn",
    scenarios=["Business"],
    license="MIT",
    input_description={"Dimension": 20, "Description": {str(i): f"x{i}" for i in range(20)}},
    output_description={"Dimension": 3, "Description": {str(i): f"class {i}" for i in range(3)}},
)

client = LearnwareClient(host=host)
assert client.is_connected()
try:
    LearnwareClient(host=host).login(email, "wharf_not-a-token")
    result["bad_login"] = "accepted"
except Exception as exc:  # the client raises a bare Exception with the envelope
    result["bad_login"] = str(exc)
client.login(email, token)
step("login")
result["model_values"] = client.list_semantic_specification_values(
    SemanticSpecificationKey.MODEL_TYPE
)
result["task_values"] = client.list_semantic_specification_values(
    SemanticSpecificationKey.TASK_TYPE
)

lid = client.upload_learnware("template.zip", semantic)
result["learnware_id"] = lid
step(f"uploaded {lid}")
deadline = time.monotonic() + 300
status = None
while time.monotonic() < deadline:
    listed = {lw["learnware_id"]: lw for lw in client.list_learnware()}
    status = listed[lid]["verify_status"]
    if status in ("SUCCESS", "FAIL"):
        break
    time.sleep(1)
result["verify_status"] = status
step(f"checked: {status}")
assert status == "SUCCESS", status
result["semantic_name"] = client.get_semantic_specification(lid)["Name"]["Values"]
try:
    client.upload_learnware("template.zip", semantic)
    result["duplicate_upload"] = "accepted"
except Exception as exc:
    result["duplicate_upload"] = str(exc)

# A user who holds data of the same kind finds it with an RKME of their own data.
X_user = centre + rng.normal(size=(200, 20))
user_spec = generate_stat_spec(type="table", X=X_user)
found = client.search_learnware(
    BaseUserInfo(
        semantic_spec=generate_semantic_spec(data_type="Table", task_type="Classification"),
        stat_info={"RKMETableSpecification": user_spec},
    )
)
result["stat_search_ids"] = found["single"]["learnware_ids"]
result["stat_search_matching"] = found["single"]["matching"]
by_name = client.search_learnware(
    BaseUserInfo(semantic_spec=generate_semantic_spec(name="reference template"))
)
result["semantic_search_ids"] = by_name["single"]["learnware_ids"]
step("searched")

client.download_learnware(lid, "downloaded.zip")
loaded = client.load_learnware(learnware_path="downloaded.zip")
expected = model.predict_proba(X_user)
result["loaded_id"] = loaded.id
result["prediction_error"] = float(np.abs(loaded.predict(X_user) - expected).max())
by_id = client.load_learnware(learnware_id=lid)
result["by_id_prediction_error"] = float(np.abs(by_id.predict(X_user) - expected).max())
step("downloaded, loaded and run")

semantic["Description"]["Values"] = "The same model, described again."
client.update_learnware(lid, semantic)
result["updated_description"] = client.get_semantic_specification(lid)["Description"]["Values"]
client.delete_learnware(lid)
result["listed_after_delete"] = lid in {lw["learnware_id"] for lw in client.list_learnware()}
step("updated and deleted")

# A package Wharf built: as written by `wharf example`, and as Wharf serves it.
X_built = np.load(built_x)
outputs = []
loaded = client.load_learnware(learnware_path=built_zip)
outputs.append(loaded.predict(X_built))
client.download_learnware(built_id, "built.zip")
with zipfile.ZipFile("built.zip") as zf:
    zf.extractall("built")
import yaml  # noqa: E402

with open(os.path.join("built", "learnware.yaml")) as f:
    served = yaml.safe_load(f)
with open(os.path.join("built", served["semantic_specification"]["file_name"])) as f:
    built_semantic = json.load(f)
direct = get_learnware_from_dirpath(served["id"], built_semantic, "built", ignore_error=False)
outputs.append(direct.predict(X_built))
result["built_served_id"] = served["id"]
result["built_outputs_agree"] = bool(np.allclose(outputs[0], outputs[1]))
result["built_output_shape"] = list(np.asarray(outputs[1]).shape)
np.save("built_outputs.npy", np.asarray(outputs[1]))
client.logout()
step("done")
with open("result.json", "w") as f:
    json.dump(result, f)
