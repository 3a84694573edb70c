"""A risk estimate for one exposure, in [0, 1] (pure).

The estimate follows the shape of GAEN's legacy (v1) risk scoring, reduced to what a
kiosk knows about one encounter:

1. **Closeness weight** of the encounter's typical signal:
   - GAEN: attenuation = TX power (from the decrypted metadata) - calibrated median RSSI,
     in the legacy buckets: <= 50 dB weight 1.0 (immediate/near), <= 74 dB weight 0.5
     (medium), further 0.0;
   - Bluezone (and GAEN when the metadata is missing): calibrated median RSSI, >= -65 dBm
     weight 1.0, >= -80 dBm weight 0.5, weaker 0.0 (the phones' own display thresholds
     are -69..-88 dBm, the kiosk's close threshold defaults to -65).
2. **Weighted minutes** = (``close_s`` + weight x (duration - ``close_s``)) / 60: time
   measured as close by the aggregator (smoothed RSSI at or above ``[encounters]
   close_rssi``) always counts in full, the rest of the encounter by its weight.
3. **Risk** = ``1 - 0.5 ** (weighted minutes / 15)``: 15 minutes close (the public
   "closer than 2 m for more than 15 minutes" rule) gives 0.5, 30 minutes 0.75, a brief
   pass near 0.

It is a ranking aid for the operator, not a medical probability.
"""

from __future__ import annotations

#: Legacy GAEN attenuation thresholds (dB) and the weights of the three buckets.
ATTENUATION_THRESHOLDS_DB = (50.0, 74.0)
#: Calibrated RSSI thresholds (dBm) used when the attenuation is unknown.
RSSI_THRESHOLDS_DBM = (-65.0, -80.0)
BUCKET_WEIGHTS = (1.0, 0.5, 0.0)
#: Weighted minutes that give a risk of 0.5.
HALF_RISK_MINUTES = 15.0


def attenuation(tx_power: int, rssi: float) -> float:
    """Signal attenuation in dB: the sender's TX power minus the calibrated RSSI."""
    return float(tx_power) - rssi


def closeness_weight(attenuation_db: float | None, rssi_median: float) -> float:
    """The bucket weight of an encounter (attenuation when known, else RSSI)."""
    if attenuation_db is not None:
        near, medium = ATTENUATION_THRESHOLDS_DB
        if attenuation_db <= near:
            return BUCKET_WEIGHTS[0]
        return BUCKET_WEIGHTS[1] if attenuation_db <= medium else BUCKET_WEIGHTS[2]
    near, medium = RSSI_THRESHOLDS_DBM
    if rssi_median >= near:
        return BUCKET_WEIGHTS[0]
    return BUCKET_WEIGHTS[1] if rssi_median >= medium else BUCKET_WEIGHTS[2]


def weighted_minutes(duration_s: float, close_s: float, weight: float) -> float:
    """Close time in full plus the rest of the encounter by its weight, in minutes."""
    close = min(max(close_s, 0.0), max(duration_s, close_s, 0.0))
    rest = max(duration_s - close, 0.0)
    return (close + weight * rest) / 60.0


def risk_score(duration_s: float, close_s: float, attenuation_db: float | None,
               rssi_median: float) -> float:
    """The risk estimate in [0, 1] described in this module's docstring."""
    minutes = weighted_minutes(duration_s, close_s, closeness_weight(attenuation_db,
                                                                     rssi_median))
    score: float = 1.0 - 0.5 ** (minutes / HALF_RISK_MINUTES)
    return round(score, 4)
