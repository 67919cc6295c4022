"""Interface constants and the defaults read from the environment (RIOS names).

The environment variables of RIOS (``RIOS_DFLT_*``) are read once, at import time.
"""
import logging
import os
import sys

logger = logging.getLogger(__name__)

INTERSECTION = 0
UNION = 1
BOUNDS_FROM_REFERENCE = 2

dfltDriverOptions = {
    "HFA": ["COMPRESSED=YES", "IGNOREUTM=YES"],
    "GTiff": ["TILED=YES", "COMPRESS=DEFLATE", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"],
    "Zarr": ["FORMAT=ZARR_V3", "COMPRESS=BLOSC"],
}

DEFAULTDRIVERNAME = "HFA"
DEFAULTCREATIONOPTIONS = []

_OBSOLETE_ENV_VARS = (
    "RIOS_PBSJOBMGR_QSUBOPTIONS",
    "RIOS_PBSJOBMGR_INITCMDS",
    "RIOS_SLURMJOBMGR_SBATCHOPTIONS",
    "RIOS_SLURMJOBMGR_INITCMDS",
)


def setDefaultDriver():
    """Read the driver-related environment variables into the module defaults."""
    global DEFAULTDRIVERNAME, DEFAULTCREATIONOPTIONS
    DEFAULTDRIVERNAME = os.getenv("RIOS_DFLT_DRIVER", "HFA")
    legacy = os.getenv("RIOS_DFLT_DRIVEROPTIONS")
    DEFAULTCREATIONOPTIONS = legacy.split() if legacy is not None else []
    if legacy is not None:
        dfltDriverOptions[DEFAULTDRIVERNAME] = list(DEFAULTCREATIONOPTIONS)
    prefix = "RIOS_DFLT_CREOPT_"
    for key, value in os.environ.items():
        if key.startswith(prefix):
            dfltDriverOptions[key[len(prefix):]] = value.split()
    for key in _OBSOLETE_ENV_VARS:
        if key in os.environ:
            logger.warning(f"WARNING: environment variable {key} is obsolete; use "
                           "ConcurrencyStyle(computeWorkerExtraParams=...) instead")


def creationOptionsForDriver(drivername):
    """The default creation options for a driver ([] when it has none)."""
    return list(dfltDriverOptions.get(drivername, []))


def _intList(text):
    return [int(v) for v in text.split(",") if v.strip()]


setDefaultDriver()

DEFAULTFOOTPRINT = int(os.getenv("RIOS_DFLT_FOOTPRINT", INTERSECTION))
DEFAULTWINDOWXSIZE = int(os.getenv("RIOS_DFLT_BLOCKXSIZE", 256))
DEFAULTWINDOWYSIZE = int(os.getenv("RIOS_DFLT_BLOCKYSIZE", 256))
DEFAULTOVERLAP = int(os.getenv("RIOS_DFLT_OVERLAP", 0))
DEFAULTLOGGINGSTREAM = sys.stdout
DEFAULT_OVERVIEWLEVELS = _intList(os.getenv("RIOS_DFLT_OVERVIEWLEVELS", "4,8,16,32,64,128,256,512"))
DEFAULT_MINOVERVIEWDIM = int(os.getenv("RIOS_DFLT_MINOVERLEVELDIM", 128))
DEFAULT_OVERVIEWAGGREGRATIONTYPE = os.getenv("RIOS_DFLT_OVERVIEWAGGTYPE", "NEAREST")
DEFAULT_AUTOCOLORTABLETYPE = os.getenv("RIOS_DFLT_AUTOCOLORTABLETYPE")
DEFAULT_RESAMPLEMETHOD = "near"
