"""The tables: scikit-learn's bundled data sets (shipped inside the package, nothing is
downloaded), each column with two honest descriptions of what it is and its unit: the wording
the learnwares' developers use, and another wording, the users'.

Every party standardises each column with the data set's published schema (the mean and
standard deviation of the developers' rows, :func:`load`), and says so in its descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class Column:
    name: str
    developer: str  # the learnwares' description
    user: str  # the users' description of the same column


@dataclass(frozen=True)
class Dataset:
    key: str
    title: str
    task: str
    columns: tuple[Column, ...]
    X: np.ndarray  # raw values, one column per entry of ``columns``
    y: np.ndarray
    n_classes: int  # 0 for a regression


# -- Wisconsin diagnostic breast cancer (569 × 30, benign or malignant) ----------------------

_NUCLEUS = {
    # name: (developer's wording, user's wording); image measurements of cell nuclei
    "radius": (
        "radius (mean distance from the nucleus centre to its perimeter, in image pixels)",
        "nucleus size as centre-to-boundary distance, pixels of the scanned image",
    ),
    "texture": (
        "texture (standard deviation of the grey-scale values inside the nucleus, grey levels)",
        "spread of grey intensity within the nucleus, grey levels",
    ),
    "perimeter": (
        "perimeter (length of the nucleus outline, in image pixels)",
        "length of the nuclear boundary, pixels",
    ),
    "area": (
        "area (of the nucleus, in square image pixels)",
        "nuclear surface in the image, pixels squared",
    ),
    "smoothness": (
        "smoothness (local variation of the radius lengths, dimensionless)",
        "how much neighbouring radii differ along the outline, unitless",
    ),
    "compactness": (
        "compactness (perimeter squared divided by area, minus 1; dimensionless)",
        "shape compactness, perimeter^2 / area - 1, no unit",
    ),
    "concavity": (
        "concavity (severity of the concave parts of the outline, dimensionless)",
        "depth of the indentations of the nuclear contour, unitless",
    ),
    "concave points": (
        "concave points (number of concave parts of the outline, a count-based measure)",
        "how many indentations the nuclear contour has",
    ),
    "symmetry": (
        "symmetry (of the nucleus shape, dimensionless)",
        "mirror symmetry of the nuclear shape, unitless",
    ),
    "fractal dimension": (
        "fractal dimension (coastline approximation minus 1, dimensionless)",
        "boundary roughness as fractal dimension - 1, unitless",
    ),
}
_STAT = {
    "mean": ("mean over the nuclei of the fine-needle aspirate image", "averaged over all cells"),
    "error": ("standard error over the nuclei of the image", "standard error across cells"),
    "worst": (
        "worst value: mean of the three largest over the nuclei of the image",
        "largest cells: average of the top three",
    ),
}


def _breast_cancer_columns(names: list[str]) -> tuple[Column, ...]:
    out = []
    for name in names:
        stat, feature = name.split(" ", 1)
        if feature not in _NUCLEUS:  # "mean radius" / "radius error" / "worst radius"
            feature, stat = name.rsplit(" ", 1)
        dev, usr = _NUCLEUS[feature]
        sdev, susr = _STAT[stat]
        out.append(
            Column(name, f"cell nucleus {dev}; {sdev}", f"{usr} ({susr}), breast biopsy cells")
        )
    return tuple(out)


# -- wine (178 × 13, three cultivars) ------------------------------------------------------

_WINE = {
    "alcohol": ("alcohol content of the wine, % by volume", "ethanol strength, percent v/v"),
    "malic_acid": (
        "malic acid concentration, g/L",
        "amount of malic acid in the wine, grams per litre",
    ),
    "ash": (
        "ash content (mineral residue after burning), g/L",
        "mineral residue left by incinerating the wine, g per litre",
    ),
    "alcalinity_of_ash": (
        "alkalinity of the ash, in the source's unit (not stated; values 10-30)",
        "how alkaline the wine's ash is (source gives no unit)",
    ),
    "magnesium": ("magnesium concentration, mg/L", "Mg content of the wine, milligrams per litre"),
    "total_phenols": (
        "total phenols, in the source's unit (not stated; values 1-4)",
        "overall phenolic content (unit not given by the source)",
    ),
    "flavanoids": (
        "flavanoid phenols, in the source's unit (not stated; values 0.3-5)",
        "flavonoid content of the wine (unit not given)",
    ),
    "nonflavanoid_phenols": (
        "non-flavanoid phenols, in the source's unit (not stated; values 0.1-0.7)",
        "phenolic compounds other than flavonoids (unit not given)",
    ),
    "proanthocyanins": (
        "proanthocyanins (condensed tannins), in the source's unit (not stated)",
        "condensed tannin content (unit not given)",
    ),
    "color_intensity": (
        "colour intensity (absorbance, dimensionless)",
        "depth of the wine's colour, optical absorbance",
    ),
    "hue": ("hue (absorbance ratio, dimensionless)", "tint of the wine as a ratio of absorbances"),
    "od280/od315_of_diluted_wines": (
        "OD280/OD315 of the diluted wine (ratio of UV absorbances, protein content indicator)",
        "ultraviolet absorbance ratio at 280 and 315 nm of diluted wine",
    ),
    "proline": (
        "proline (amino acid) concentration, mg/L",
        "amount of the amino acid proline, milligrams per litre",
    ),
}

# -- diabetes (442 × 10, disease progression after one year) -------------------------------

_DIABETES = {
    "age": ("age of the patient, years", "patient's age in years"),
    "sex": ("sex of the patient, coded 1 or 2", "patient gender (two codes, 1 and 2)"),
    "bmi": ("body mass index, kg/m^2", "weight over height squared, kilograms per square metre"),
    "bp": ("average blood pressure, mm Hg", "mean arterial pressure, millimetres of mercury"),
    "s1": (
        "total serum cholesterol, mg/dL",
        "blood total cholesterol level, milligrams per decilitre",
    ),
    "s2": (
        "low-density lipoproteins (LDL) in serum, mg/dL",
        "LDL ('bad') cholesterol in the blood, mg per dL",
    ),
    "s3": (
        "high-density lipoproteins (HDL) in serum, mg/dL",
        "HDL ('good') cholesterol in the blood, mg per dL",
    ),
    "s4": ("total cholesterol divided by HDL (ratio)", "cholesterol to HDL ratio, unitless"),
    "s5": (
        "log of the serum triglycerides level (log mg/dL)",
        "triglycerides in the blood, natural logarithm of mg/dL",
    ),
    "s6": (
        "blood sugar (glucose) level, mg/dL",
        "glucose concentration in the blood, milligrams per decilitre",
    ),
}

# -- iris (150 × 4, three species) ------------------------------------------------------------

_IRIS = {
    "sepal length (cm)": (
        "sepal length of the iris flower, cm",
        "length of the flower's sepal in centimetres",
    ),
    "sepal width (cm)": ("sepal width of the iris flower, cm", "breadth of the sepal, centimetres"),
    "petal length (cm)": (
        "petal length of the iris flower, cm",
        "length of the flower's petal in centimetres",
    ),
    "petal width (cm)": ("petal width of the iris flower, cm", "breadth of the petal, centimetres"),
}


def _from_table(names: list[str], words: dict[str, tuple[str, str]]) -> tuple[Column, ...]:
    return tuple(Column(n, words[n][0], words[n][1]) for n in names)


@cache
def load(key: str) -> Dataset:
    """One of :data:`KEYS`, from the files inside scikit-learn."""
    from sklearn import datasets

    if key == "breast_cancer":
        d = datasets.load_breast_cancer()
        columns = _breast_cancer_columns(list(d.feature_names))
        return Dataset(
            key,
            "Breast cancer (Wisconsin diagnostic)",
            CLASSIFICATION,
            columns,
            d.data,
            d.target.astype(np.int64),
            2,
        )
    if key == "wine":
        d = datasets.load_wine()
        return Dataset(
            key,
            "Wine cultivars",
            CLASSIFICATION,
            _from_table(list(d.feature_names), _WINE),
            d.data,
            d.target.astype(np.int64),
            3,
        )
    if key == "diabetes":
        d = datasets.load_diabetes(scaled=False)
        return Dataset(
            key,
            "Diabetes progression",
            REGRESSION,
            _from_table(list(d.feature_names), _DIABETES),
            d.data,
            d.target.astype(np.float64),
            0,
        )
    if key == "iris":
        d = datasets.load_iris()
        return Dataset(
            key,
            "Iris species",
            CLASSIFICATION,
            _from_table(list(d.feature_names), _IRIS),
            d.data,
            d.target.astype(np.int64),
            3,
        )
    raise KeyError(key)


KEYS = ("breast_cancer", "wine", "diabetes", "iris")
