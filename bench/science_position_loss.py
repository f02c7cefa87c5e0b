"""Flux lost to catalog position errors on the simulated DSA-110 layout (docs/photometry.md).

``python -m bench.science_position_loss``: for the 96 antennas with data (simulation/layout.py)
at transit, the fraction of a point source's flux that forced photometry at a position dtheta
from the true one loses, averaged over the error's direction: 1 - <J0(2 pi q dtheta)> over the
baselines used (q their projected length in wavelengths; the average over directions of
cos(2 pi u . dtheta) is J0), at the band centre, for several uv ranges; and what each range costs
in thermal error (sqrt of the baselines dropped, uniform weights). A pure calculation: no
timing, no load dependence.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import j0

from dsa110d.science import constants as k
from dsa110d.science.photometry.settings import DEFAULT_UV_MIN_LAMBDA
from dsa110d.science.simulation import layout

BAND_CENTRE_HZ = 1.405e9
OFFSETS_ARCSEC = (0.5, 1.0, 1.5, 2.0, 3.0)
UV_MAX_LAMBDA = (math.inf, 6000.0, 4000.0, 3000.0, 2000.0)
DECS_DEG = (0.0, 37.2, 70.0)


def projected_uv_lambda(dec_deg: float) -> np.ndarray:
    """|uv| (wavelengths at the band centre) of the cross baselines at hour angle 0."""
    enu = layout.antenna_enu_m()[layout.data_antennas(layout.SCALES["real"])]
    a1, a2 = np.triu_indices(len(enu), k=1)
    b = enu[a2] - enu[a1]
    u = b[:, 0]
    v = b[:, 1] * math.cos(math.radians(dec_deg) - k.OVRO_LAT_RAD)
    return np.hypot(u, v) * BAND_CENTRE_HZ / k.SPEED_OF_LIGHT_M_S


def main() -> None:
    for dec in DECS_DEG:
        q_all = projected_uv_lambda(dec)
        q_all = q_all[q_all >= DEFAULT_UV_MIN_LAMBDA]
        print(f"dec {dec:5.1f} deg: {q_all.size} baselines >= {DEFAULT_UV_MIN_LAMBDA:g} lambda")
        head = "  uv_max     error x  " + "  ".join(f'{o:4.1f}"' for o in OFFSETS_ARCSEC)
        print(head)
        for hi in UV_MAX_LAMBDA:
            q = q_all[q_all <= hi]
            cost = math.sqrt(q_all.size / q.size)
            losses = [
                1 - float(j0(2 * np.pi * q * math.radians(o / 3600.0)).mean())
                for o in OFFSETS_ARCSEC
            ]
            print(f"  {hi:7g}   {cost:6.2f}   " + "  ".join(f"{100 * x:4.1f}%" for x in losses))


if __name__ == "__main__":
    main()
