"""ICD codes and the CMS files about them: code formats and the two systems
(:mod:`.codes`), the GEM file reader (:mod:`.gem`) and code titles (:mod:`.titles`)."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".codes": ("OTHER_SYSTEM", "SYSTEMS", "SYSTEM_IDS", "SYSTEM_LABELS", "dot_code",
               "format_code", "parse_code"),
    ".gem": ("DataFileError", "cms_2018_gem_paths", "cms_procedure_gem_path", "read_gem_file"),
    ".titles": ("code_title", "load_titles"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
