"""Synthetic invoice lines from the BG/NBD + Gamma-Gamma story, in the source format of the real data.

Benchmarks need data at sizes the real extract does not have (10M+ lines), and tests need data
whose true customer parameters are known, so that a fit on the pipeline's own features can be
checked against the truth. Each customer:
  - is acquired (first purchase) at a uniform time in the acquisition window;
  - buys at Poisson rate lambda ~ Gamma(r, rate alpha) per week, and after each repeat purchase
    leaves for good with probability p ~ Beta(a, b) (the BG/NBD process);
  - spends per invoice z ~ Gamma(p_spend, rate nu), nu ~ Gamma(q, rate gamma) (Gamma-Gamma), split
    over invoice lines of products drawn by a Zipf-like popularity;
  - cancels an invoice with a fixed probability, which writes a `C...` invoice of negative lines
    a few days later (a return, as in the real data).
A share of extra invoices has no customer id, as in the real extract, where ~20% of lines do not.

Customers are generated in fixed-size blocks, each with its own seed derived from (seed, block),
so the output for a seed does not depend on how many files it is written to.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clv.baselines import BGNBDParams, GammaGammaParams

log = logging.getLogger(__name__)

# Online Retail II's column names and order, so the generated files read with the default config
SOURCE_COLUMNS = ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country")
BLOCK_CUSTOMERS = 20_000
_DAY_SECONDS = 86_400
_OPEN_HOURS = (8 * 3600, 20 * 3600)  # invoices are stamped between 08:00 and 20:00


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Rates are per week (the baselines' time unit), money in the source currency."""

    n_customers: int
    seed: int = 0
    start: dt.date = dt.date(2009, 12, 1)
    end: dt.date = dt.date(2011, 12, 9)
    # customers are acquired in [start, start + acquisition_share * (end - start)]
    acquisition_share: float = 0.75
    purchases: BGNBDParams = BGNBDParams(r=0.6, alpha=6.0, a=0.8, b=3.0)
    spend: GammaGammaParams = GammaGammaParams(p=4.0, q=4.0, gamma=60.0)
    countries: Sequence[str] = ("United Kingdom", "Germany", "France")
    country_weights: Sequence[float] = (0.8, 0.12, 0.08)
    n_products: int = 4000
    lines_per_invoice: float = 12.0
    cancel_share: float = 0.03
    anonymous_share: float = 0.1  # extra invoices without a customer, as a share of all invoices
    first_customer_id: int = 100_000

    def __post_init__(self) -> None:
        problems = []
        if self.n_customers < 1:
            problems.append(f"n_customers must be >= 1; got {self.n_customers}")
        if not self.start < self.end:
            problems.append(f"start {self.start} must be before end {self.end}")
        if not 0 < self.acquisition_share <= 1:
            problems.append(f"acquisition_share must be in (0, 1]; got {self.acquisition_share}")
        if len(self.countries) != len(self.country_weights) or not self.countries:
            problems.append("countries and country_weights must be non-empty and of equal length")
        elif min(self.country_weights) < 0 or sum(self.country_weights) <= 0:
            problems.append("country_weights must be >= 0 and not all 0")
        if self.n_products < 1 or self.lines_per_invoice < 1:
            problems.append("n_products and lines_per_invoice must be >= 1")
        if not 0 <= self.cancel_share < 1 or not 0 <= self.anonymous_share < 1:
            problems.append("cancel_share and anonymous_share must be in [0, 1)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def window_days(self) -> int:
        return (self.end - self.start).days

    def with_customers(self, n_customers: int) -> SyntheticSpec:
        return replace(self, n_customers=n_customers)


@dataclass(frozen=True)
class Catalogue:
    """Products: stock codes, descriptions, unit prices and popularity, fixed by the seed."""

    stock_codes: np.ndarray
    descriptions: np.ndarray
    prices: np.ndarray
    popularity: np.ndarray  # cumulative, for inverse-CDF draws

    @classmethod
    def of(cls, spec: SyntheticSpec) -> Catalogue:
        rng = np.random.default_rng([spec.seed, 0xCA7])
        n = spec.n_products
        # two-decimal prices, log-normal around ~2.5 like the gift-ware in the real data
        prices = np.maximum(np.round(np.exp(rng.normal(0.9, 0.8, n)), 2), 0.01)
        weights = 1.0 / np.arange(1, n + 1) ** 0.9
        rng.shuffle(weights)
        return cls(
            stock_codes=np.array([f"{20000 + k}" for k in range(n)], dtype=object),
            descriptions=np.array([f"SYNTHETIC PRODUCT {k}" for k in range(n)], dtype=object),
            prices=prices,
            popularity=np.cumsum(weights) / weights.sum(),
        )


def _customer_purchases(
    spec: SyntheticSpec,
    rng: np.random.Generator,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(owner, day offset from spec.start) of every purchase, first purchases included, sorted."""
    window = float(spec.window_days)
    first = rng.uniform(0.0, spec.acquisition_share * window, n)
    bg = spec.purchases
    lam = rng.gamma(shape=bg.r, scale=1.0 / bg.alpha, size=n) / 7.0  # per day
    p = np.clip(rng.beta(bg.a, bg.b, size=n), 1e-15, 1.0)
    repeats_allowed = rng.geometric(p)  # leaves right after this repeat purchase
    observed = window - first
    arrivals = rng.poisson(lam * observed)
    owner = np.repeat(np.arange(n), arrivals)
    offset = first[owner] + rng.uniform(0.0, 1.0, owner.size) * observed[owner]
    order = np.lexsort((offset, owner))
    owner, offset = owner[order], offset[order]
    starts = np.concatenate([[0], np.cumsum(arrivals)[:-1]])
    rank = np.arange(owner.size) - starts[owner]
    kept = rank < repeats_allowed[owner]
    owner = np.concatenate([np.arange(n), owner[kept]])
    offset = np.concatenate([first, offset[kept]])
    order = np.lexsort((offset, owner))
    return owner[order], offset[order]


def _stamp(spec: SyntheticSpec, rng: np.random.Generator, offset_days: np.ndarray) -> np.ndarray:
    """Day offsets -> datetime64[s] inside opening hours of the same calendar day."""
    day = np.floor(offset_days).astype(np.int64)
    within = _OPEN_HOURS[0] + (rng.uniform(0, 1, day.size) * (_OPEN_HOURS[1] - _OPEN_HOURS[0])).astype(np.int64)
    within = within // 60 * 60  # the real data is stamped to the minute
    base = np.datetime64(spec.start, "s")
    return base + (day * _DAY_SECONDS + within).astype("timedelta64[s]")


def _lines(
    spec: SyntheticSpec,
    catalogue: Catalogue,
    rng: np.random.Generator,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split each invoice value over lines: (invoice index, product, quantity, price) per line."""
    n_lines = 1 + rng.poisson(spec.lines_per_invoice - 1.0, values.size)
    invoice = np.repeat(np.arange(values.size), n_lines)
    product = np.searchsorted(catalogue.popularity, rng.uniform(0, 1, invoice.size), side="right")
    product = np.minimum(product, catalogue.popularity.size - 1)
    share = rng.exponential(1.0, invoice.size)  # Dirichlet(1) shares, normalised per invoice
    share /= np.bincount(invoice, weights=share)[invoice]
    price = catalogue.prices[product]
    quantity = np.maximum(1, np.rint(values[invoice] * share / price)).astype(np.int64)
    return invoice, product, quantity, price


def generate_block(spec: SyntheticSpec, block: int, catalogue: Catalogue | None = None) -> dict[str, np.ndarray]:
    """The source columns for customers [block * BLOCK_CUSTOMERS, ...) plus their share of anonymous invoices."""
    catalogue = catalogue or Catalogue.of(spec)
    first_customer = block * BLOCK_CUSTOMERS
    n = min(BLOCK_CUSTOMERS, spec.n_customers - first_customer)
    if n <= 0:
        raise ValueError(f"block {block} is past the last customer ({spec.n_customers})")
    rng = np.random.default_rng([spec.seed, block])
    owner, offset = _customer_purchases(spec, rng, n)

    gg = spec.spend
    nu = rng.gamma(shape=gg.q, scale=1.0 / gg.gamma, size=n)
    values = rng.gamma(shape=gg.p, scale=1.0 / nu[owner])
    country_of = rng.choice(len(spec.countries), size=n, p=np.asarray(spec.country_weights) / sum(spec.country_weights))

    n_anonymous = int(round(owner.size * spec.anonymous_share / (1 - spec.anonymous_share)))
    anon_offset = rng.uniform(0.0, spec.window_days, n_anonymous)
    # an anonymous invoice is a one-off customer: its own nu, one draw of value
    anon_nu = rng.gamma(shape=gg.q, scale=1.0 / gg.gamma, size=n_anonymous)
    anon_values = rng.gamma(shape=gg.p, scale=1.0 / anon_nu)
    anon_country = rng.choice(
        len(spec.countries), size=n_anonymous, p=np.asarray(spec.country_weights) / sum(spec.country_weights)
    )

    customer = np.concatenate([first_customer + owner, np.full(n_anonymous, -1)])
    offsets = np.concatenate([offset, anon_offset])
    all_values = np.concatenate([values, anon_values])
    country = np.concatenate([country_of[owner], anon_country])
    stamp = _stamp(spec, rng, offsets)

    invoice, product, quantity, price = _lines(spec, catalogue, rng, all_values)
    n_invoices = all_values.size
    invoice_no = (np.int64(block) * 10_000_000 + 1_000_000 + np.arange(n_invoices)).astype(str).astype(object)

    # cancellations: a later `C` invoice returning a random subset of an invoice's lines
    cancelled = rng.uniform(0, 1, n_invoices) < spec.cancel_share
    returned = cancelled[invoice] & (rng.uniform(0, 1, invoice.size) < 0.5)
    delay = rng.uniform(0.5, 14.0, n_invoices)
    cancel_offset = np.minimum(offsets + delay, spec.window_days - 1e-6)
    cancel_stamp = _stamp(spec, rng, cancel_offset)
    ret = np.flatnonzero(returned)

    line_invoice = np.concatenate([invoice_no[invoice], "C" + invoice_no[invoice[ret]]])
    line_customer = np.concatenate([customer[invoice], customer[invoice[ret]]])
    columns = {
        "Invoice": line_invoice,
        "StockCode": np.concatenate([catalogue.stock_codes[product], catalogue.stock_codes[product[ret]]]),
        "Description": np.concatenate([catalogue.descriptions[product], catalogue.descriptions[product[ret]]]),
        "Quantity": np.concatenate([quantity, -np.maximum(1, quantity[ret] // 2)]),
        "InvoiceDate": np.concatenate([stamp[invoice], cancel_stamp[invoice[ret]]]),
        "Price": np.concatenate([price, price[ret]]),
        "Customer ID": np.where(line_customer >= 0, line_customer + spec.first_customer_id, -1),
        "Country": np.asarray(spec.countries, dtype=object)[np.concatenate([country[invoice], country[invoice[ret]]])],
    }
    order = np.argsort(columns["InvoiceDate"], kind="stable")
    return {name: values_[order] for name, values_ in columns.items()}


def blocks(spec: SyntheticSpec) -> Iterator[dict[str, np.ndarray]]:
    catalogue = Catalogue.of(spec)
    for block in range(math.ceil(spec.n_customers / BLOCK_CUSTOMERS)):
        yield generate_block(spec, block, catalogue)


def _to_arrow(columns: dict[str, np.ndarray]):
    import pyarrow as pa
    import pyarrow.compute as pc

    customer = columns["Customer ID"]
    return pa.table(
        {
            "Invoice": pa.array(columns["Invoice"], pa.string()),
            "StockCode": pa.array(columns["StockCode"], pa.string()),
            "Description": pa.array(columns["Description"], pa.string()),
            "Quantity": pa.array(columns["Quantity"], pa.int64()),
            # "YYYY-MM-DD HH:MM:SS", the real file's format
            "InvoiceDate": pc.strftime(pa.array(columns["InvoiceDate"], pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S"),
            "Price": pa.array(columns["Price"], pa.float64()),
            "Customer ID": pa.array(customer, pa.int64(), mask=customer < 0),  # empty field when missing
            "Country": pa.array(columns["Country"], pa.string()),
        }
    )


@dataclass(frozen=True)
class WrittenSource:
    paths: list[Path]
    lines: int


def write_source(spec: SyntheticSpec, folder: str | Path, *, compress: bool = True) -> WrittenSource:
    """Write the data as CSV part files (one per customer block) that `use_case.source.path` can read.

    Parts, not one file: a gzip file cannot be split, so one big file would be read by one core.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stale = sorted(folder.glob("part-*.csv*"))
    if stale:
        raise FileExistsError(f"{folder} already holds {len(stale)} part files; write into an empty folder")
    paths, lines = [], 0
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    for index, columns in enumerate(blocks(spec)):
        path = folder / f"part-{index:05d}.csv{'.gz' if compress else ''}"
        table = _to_arrow(columns)
        lines += table.num_rows
        if compress:
            with pa.CompressedOutputStream(str(path), "gzip") as sink:
                pacsv.write_csv(table, sink, options)
        else:
            pacsv.write_csv(table, str(path), options)
        paths.append(path)
    log.info("wrote %d synthetic lines in %d part files to %s", lines, len(paths), folder)
    return WrittenSource(paths, lines)


def lines_per_customer(spec: SyntheticSpec, pilot_customers: int = BLOCK_CUSTOMERS) -> float:
    """Expected source lines per customer, from one pilot block (anonymous lines included)."""
    pilot = spec.with_customers(pilot_customers)
    return generate_block(pilot, 0)["Invoice"].size / pilot_customers


def customers_for_lines(spec: SyntheticSpec, lines: int) -> int:
    """How many customers give about `lines` source lines with this spec."""
    return max(1, int(round(lines / lines_per_customer(spec))))
