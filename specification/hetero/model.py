"""A trained map: map RKMEs into the shared space, and save or load the map as bytes.

The bytes are a ``torch.save`` of plain tensors and JSON-like values only (the configuration,
the state dict, a few facts about the training), read back with ``weights_only=True``: loading
a map never unpickles code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._arrays import resolve_device
from ..errors import SpecificationError
from ..rkme import RKME
from .columns import MAX_COLUMNS, initial_token_table, tokenize
from .network import HeteroMapConfig, HeteroMapNetwork
from .spec import HETERO_GAMMA, HeteroMapTableSpecification

MAP_FORMAT = "wharf-hetero-map/1"
#: Cells (rows × columns) encoded at once when mapping (the reference's bound), so the
#: memory of a mapping does not grow with K.
MAX_CELLS_PER_BATCH = 20_480


class HeteroMap:
    """The market's map into the shared space.

    Parameters
    ----------
    network : HeteroMapNetwork
        The trained (or freshly initialised) network.
    info : dict, optional
        JSON-like facts kept with the map (its version, what it was trained on).
    device : str, default="auto"
        Where mapping runs (CUDA when available with ``"auto"``).

    Examples
    --------
    >>> import numpy as np
    >>> from wharf.specification.rkme import RKME
    >>> hmap = HeteroMap.initial(HeteroMapConfig(hidden_dim=16, num_heads=2, ffn_dim=16,
    ...                          projection_dim=8), seed=0, device="cpu")
    >>> rkme = RKME.from_arrays(np.ones((3, 2)), np.full(3, 1 / 3), 0.1, 10)
    >>> hmap.map_spec(rkme, ["age in years", "income"]).z_.shape
    (3, 16)
    """

    def __init__(
        self, network: HeteroMapNetwork, info: dict[str, Any] | None = None, *, device: str = "auto"
    ):
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()
        self.config: HeteroMapConfig = network.config
        self.info = dict(info or {})

    @classmethod
    def initial(
        cls, config: HeteroMapConfig | None = None, *, seed: int = 0, device: str = "auto"
    ) -> HeteroMap:
        """A map with freshly initialised weights, the same for the same seed."""
        return cls(new_network(config or HeteroMapConfig(), seed), device=device)

    @property
    def dim(self) -> int:
        """Width of the shared space."""
        return self.config.hidden_dim

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    # -- mapping -------------------------------------------------------------------------
    def map_rows(self, X: Any, descriptions: Sequence[str]) -> np.ndarray:
        """Rows of a table whose columns ``descriptions`` describe → (n, dim) float64."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise SpecificationError(f"X must be a table (n, d), got shape {X.shape}")
        d = X.shape[1]
        if len(descriptions) != d:
            raise SpecificationError(
                f"{len(descriptions)} column descriptions for a table of {d} columns"
            )
        if not 1 <= d <= MAX_COLUMNS:
            raise SpecificationError(f"a table of {d} columns; the map takes 1 to {MAX_COLUMNS}")
        ids, mask = tokenize(list(descriptions))
        rows_per_batch = max(1, MAX_CELLS_PER_BATCH // (d + 1))
        out = []
        with torch.inference_mode():
            columns = self.network.column_embeddings(
                torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
            )
            for start in range(0, X.shape[0], rows_per_batch):
                chunk = torch.from_numpy(X[start : start + rows_per_batch]).to(
                    self.device, torch.float32
                )
                out.append(self.encode(chunk, columns).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def encode(self, values: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Rows (N, d) and their columns' embeddings → their (N, dim) points in the shared
        space: the network's row vectors times the map's ``output_scale``."""
        return self.network.encode(values, columns) * self.config.output_scale

    def map_spec(self, rkme: RKME, descriptions: Sequence[str]) -> HeteroMapTableSpecification:
        """An RKME's reduced points in the shared space, with its weights β and γ = 0.1."""
        z = rkme.z_flat
        spec = HeteroMapTableSpecification.from_arrays(
            self.map_rows(z, descriptions), rkme.beta_, HETERO_GAMMA
        )
        spec.map_version = self.version
        return spec

    # -- bytes ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        torch.save(
            {
                "format": MAP_FORMAT,
                "config": self.config.to_dict(),
                "info": self.info,
                "state": state,
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "auto") -> HeteroMap:
        try:
            saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several kinds for a bad file
            raise SpecificationError(f"not a saved map: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != MAP_FORMAT:
            raise SpecificationError(f"not a saved map of format {MAP_FORMAT}")
        network = HeteroMapNetwork(HeteroMapConfig.from_dict(saved["config"]))
        try:
            network.load_state_dict(saved["state"])
        except (RuntimeError, KeyError) as exc:
            raise SpecificationError(f"the saved map's weights do not fit it: {exc}") from None
        return cls(network, saved.get("info"), device=device)


def new_network(config: HeteroMapConfig, seed: int) -> HeteroMapNetwork:
    """A network initialised from ``seed`` alone (the global RNG is left as it was), its token
    table from MiniLM's word vectors (:func:`~.columns.initial_token_table`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        network = HeteroMapNetwork(config)
    table = torch.from_numpy(initial_token_table(config.hidden_dim, int(seed)))
    with torch.no_grad():
        network.token_embedding.weight.copy_(table)
    return network
