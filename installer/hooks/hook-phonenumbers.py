"""Replaces pyinstaller-hooks-contrib's hook, which collects every phonenumbers submodule.

The agent only parses, validates and formats numbers: it needs the metadata (`phonenumbers.data`,
loaded per region by name at run time, so PyInstaller cannot see it) and the short-number
metadata, not the geocoding, carrier and time-zone tables, which are most of the package's size.
"""

from PyInstaller.utils.hooks import collect_submodules

_NOT_NEEDED = ("phonenumbers.geodata", "phonenumbers.carrierdata", "phonenumbers.tzdata")

hiddenimports = collect_submodules(
    "phonenumbers", filter=lambda name: not name.startswith(_NOT_NEEDED)
)
