"""Image and text learnwares, end to end: build them, submit them to a real market, and find
each one as a user whose data matches it.

- **Images**: scikit-learn's 8×8 digits, upscaled to 16×16 grey images with values in
  [0, 255], split by digit group (0–2, 3–5, 6–9). Each learnware is a softmax classifier on
  the 2×2-pooled pixels, in plain numpy; its spec is an image RKME fitted with a few narrow
  random nets (CPU-sized; the reference's defaults want a GPU).
- **Texts**: short synthetic reviews of three topics (sports, cooking, finance) and French
  cooking reviews, each labelled positive or negative. Each learnware is a bag-of-words
  logistic regression whose vocabulary and weights ship in the package; its spec is a text
  RKME (offline MiniLM sentence embeddings) tagged with the texts' language.

Run ``python -m wharf.examples.modalities`` to start a market on the embedded default, submit the
seven learnwares, and search it as five users (about a minute on two cores).
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from wharf.specification import dumps_spec
from wharf.specification.image import RKMEImage
from wharf.specification.package import make_manifest, write_package
from wharf.specification.semantic import generate_semantic_spec
from wharf.specification.text import RKMEText

from .learnwares import Example

#: Image RKME settings for a CPU: K = 8, three rounds of two random nets 32 channels wide.
IMAGE_FIT = {
    "n_points": 8,
    "steps": 3,
    "n_models": 2,
    "model_config": {"net_width": 16},
    "device": "cpu",
}
TEXT_FIT = {"n_points": 10, "device": "cpu"}

IMAGE_MODEL_CODE = '''\
import os

import numpy as np
from learnware.model import BaseModel


class DigitImages(BaseModel):
    """Digit scores of 16×16 grey images (values 0–255): a softmax on the 2×2-pooled pixels."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        weights = np.load(os.path.join(here, "weights.npz"))
        self.coef, self.intercept = weights["coef"], weights["intercept"]
        super().__init__(input_shape=(1, 16, 16), output_shape=(10,))

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(-1, 8, 2, 8, 2)
        pixels = X.mean(axis=(2, 4)).reshape(len(X), 64) / 255.0
        scores = pixels @ self.coef.T + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)
'''

TEXT_MODEL_CODE = '''\
import json
import os
import re

import numpy as np
from learnware.model import BaseModel

TOKEN = re.compile(r"(?u)\\b\\w\\w+\\b")


class ReviewSentiment(BaseModel):
    """Positive (1) or negative (0) review: a bag of words and a logistic regression."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "vocabulary.json"), encoding="utf-8") as f:
            self.vocabulary = {word: i for i, word in enumerate(json.load(f))}
        weights = np.load(os.path.join(here, "weights.npz"))
        self.coef, self.intercept = weights["coef"], float(weights["intercept"])
        super().__init__(input_shape=None, output_shape=(1,))

    def predict(self, X):
        counts = np.zeros((len(X), len(self.vocabulary)))
        for row, text in enumerate(X):
            for word in TOKEN.findall(str(text).lower()):
                if word in self.vocabulary:
                    counts[row, self.vocabulary[word]] += 1
        return (counts @ self.coef + self.intercept > 0).astype(np.int64)
'''

DIGIT_GROUPS = {"digits 0-2": (0, 1, 2), "digits 3-5": (3, 4, 5), "digits 6-9": (6, 7, 8, 9)}

#: (subjects, positive predicates, negative predicates, endings, language) per topic.
TOPICS: dict[str, tuple[list[str], list[str], list[str], list[str], str]] = {
    "sports reviews": (
        ["The striker", "Our goalkeeper", "The home team", "The young sprinter", "The captain"],
        ["won the final", "scored a brilliant goal", "broke the record", "played superbly"],
        ["lost the derby", "missed an easy penalty", "was injured in training", "played terribly"],
        ["last night.", "in the second half.", "at the stadium.", "this season."],
        "en",
    ),
    "cooking reviews": (
        ["The soup", "This bread", "The chocolate cake", "The pasta sauce", "The roast chicken"],
        ["tasted wonderful", "came out perfectly golden", "was rich and delicious", "was a hit"],
        ["was far too salty", "burned in the oven", "turned out bland and dry", "was a disaster"],
        ["after an hour of baking.", "with fresh herbs.", "at dinner yesterday.", "as always."],
        "en",
    ),
    "finance reviews": (
        ["The stock market", "Our quarterly revenue", "The bank's shares", "The bond fund"],
        ["rose sharply", "beat analyst expectations", "reached a record high", "grew steadily"],
        ["fell sharply", "missed the forecast", "dropped to a yearly low", "lost investors money"],
        ["after the earnings call.", "on Monday.", "this quarter.", "despite the inflation."],
        "en",
    ),
    "recettes (French cooking)": (
        ["La soupe", "Ce pain", "Le gâteau au chocolat", "La sauce tomate", "Le poulet rôti"],
        ["était délicieuse", "était parfaitement doré", "avait un goût merveilleux", "a plu"],
        ["était beaucoup trop salée", "a brûlé dans le four", "était fade et sèche", "a déçu"],
        ["au dîner d'hier.", "avec des herbes fraîches.", "comme toujours.", "ce soir."],
        "fr",
    ),
}


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """Digits as (n, 1, 16, 16) grey images with values in [0, 255], and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.kron(d.images, np.ones((2, 2)))[:, None] * (255.0 / 16.0), d.target


def reviews(topic: str, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """``n`` synthetic reviews of a topic and their labels (1 positive, 0 negative)."""
    subjects, good, bad, endings, _ = TOPICS[topic]
    labels = rng.integers(0, 2, size=n)
    texts = [
        f"{rng.choice(subjects)} {rng.choice(good if y else bad)} {rng.choice(endings)}"
        for y in labels
    ]
    return texts, labels


def _semantic(name: str, description: str, data_type: str, n_out: int, scenario: str) -> dict:
    return generate_semantic_spec(
        name=name,
        description=description,
        data_type=data_type,
        task_type="Classification",
        library_type="Scikit-learn",
        scenarios=[scenario],
        license="BSD-3-Clause",
        output_description={
            "Dimension": n_out,
            "Description": {str(i): f"class {i}" for i in range(n_out)},
        },
    )


def _write(out_dir: Path, slug: str, files: dict[str, bytes]) -> Path:
    package = out_dir / f"{slug}.zip"
    write_package(package, files, top_folder=slug)
    return package


def build_image_examples(out_dir: str | Path, *, seed: int = 0, train: int = 150) -> list[Example]:
    """One package per digit group; ``X_test`` holds held-out images of that group."""
    from sklearn.linear_model import LogisticRegression

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, labels = digit_images()
    pixels = images.reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(len(images), 64) / 255
    rng = np.random.default_rng(seed)
    examples = []
    for name, group in DIGIT_GROUPS.items():
        rows = np.flatnonzero(np.isin(labels, group))
        rng.shuffle(rows)
        fit_rows, test_rows = rows[:train], rows[train:]
        model = LogisticRegression(max_iter=2000).fit(pixels[fit_rows], labels[fit_rows])
        coef, intercept = np.zeros((10, 64)), np.full(10, -1e3)  # unseen classes: no mass
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
        weights = io.BytesIO()
        np.savez(weights, coef=coef, intercept=intercept)
        spec = RKMEImage(seed=seed, **IMAGE_FIT).fit(images[fit_rows])
        slug = name.replace(" ", "-")
        package = _write(
            out_dir,
            slug,
            {
                "learnware.yaml": make_manifest("DigitImages", spec_class="RKMEImageSpecification"),
                "__init__.py": IMAGE_MODEL_CODE.encode(),
                "weights.npz": weights.getvalue(),
                "stat_spec.json": dumps_spec(spec).encode(),
                "requirements.txt": b"numpy\n",
            },
        )
        semantic = _semantic(
            f"Digit images: {name}",
            f"Classifies 16×16 grey digit images (0–255) of the group {name[7:]}.",
            "Image",
            10,
            "Education",
        )
        examples.append(Example(name, package, semantic, images[test_rows], labels[test_rows]))
    return examples


def build_text_examples(out_dir: str | Path, *, seed: int = 0, train: int = 60) -> list[Example]:
    """One sentiment package per topic; ``X_test`` holds held-out reviews of that topic."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = []
    for topic, (*_, language) in TOPICS.items():
        texts, labels = reviews(topic, train + 20, rng)
        vectorizer = CountVectorizer()
        counts = vectorizer.fit_transform(texts[:train])
        model = LogisticRegression(max_iter=2000).fit(counts, labels[:train])
        weights = io.BytesIO()
        np.savez(weights, coef=model.coef_[0], intercept=model.intercept_[0])
        vocabulary = json.dumps(vectorizer.get_feature_names_out().tolist(), ensure_ascii=False)
        spec = RKMEText(seed=seed, **TEXT_FIT).fit(texts[:train])
        slug = re.sub(r"[^a-z]+", "-", topic.split(" (")[0].lower()).strip("-")
        package = _write(
            out_dir,
            slug,
            {
                "learnware.yaml": make_manifest(
                    "ReviewSentiment", spec_class="RKMETextSpecification"
                ),
                "__init__.py": TEXT_MODEL_CODE.encode(),
                "vocabulary.json": vocabulary.encode(),
                "weights.npz": weights.getvalue(),
                "stat_spec.json": dumps_spec(spec).encode(),
                "requirements.txt": b"numpy\n",
            },
        )
        semantic = _semantic(
            f"Review sentiment: {topic}",
            f"Tells positive from negative {topic} ({language}); takes a list of strings.",
            "Text",
            2,
            "Entertainment",
        )
        examples.append(Example(topic, package, semantic, texts[train:], labels[train:]))
    return examples


def user_spec(example: Example, *, seed: int = 1) -> RKMEImage | RKMEText:
    """The RKME a user with ``example``'s held-out data would compute on their side."""
    if isinstance(example.X_test, np.ndarray):
        return RKMEImage(seed=seed, **IMAGE_FIT).fit(example.X_test)
    return RKMEText(seed=seed, **TEXT_FIT).fit(example.X_test)


def main(log: Callable[[str], None] = print) -> int:
    """Start a market, submit every example, and search it as one user per learnware."""
    from wharf.cli.market import print_results
    from wharf.cli.serve import LocalMarket
    from wharf.client import WharfClient

    with tempfile.TemporaryDirectory(prefix="wharf-modalities-") as tmp:
        t0 = time.perf_counter()
        examples = build_image_examples(Path(tmp) / "packages")
        examples += build_text_examples(Path(tmp) / "packages")
        log(f"built {len(examples)} learnwares in {time.perf_counter() - t0:.1f} s")
        with (
            LocalMarket(Path(tmp) / "market", workers=2) as market,
            WharfClient(market.url, market.token) as client,
        ):
            subs = [(ex, client.submit(ex.package, ex.semantic)) for ex in examples]
            for ex, sub in subs:
                client.wait(sub["job_id"], timeout=300)
                status = client.learnware(sub["learnware_id"])["status"]
                log(f"  {sub['learnware_id']}  {ex.semantic['Name']['Values']:<48} {status}")
            for ex in examples:
                spec = user_spec(ex)
                found = client.search(spec=spec, top=3)
                langs = f", languages {spec.language_}" if hasattr(spec, "language_") else ""
                log(f"\n— a user with {len(ex.X_test)} held-out {ex.name}{langs}:")
                print_results(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
