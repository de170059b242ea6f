# Finds the text front end's dependencies (sgt::text): Oniguruma, the regex engine Hugging Face
# `tokenizers` runs, and utf8proc for Unicode normalization. Debian: libonig-dev libutf8proc-dev.
# Used by the build tree and by the installed sgtConfig.cmake alike. Sets sgt_text_deps_FOUND and,
# when found, the imported targets sgt_deps::onig and sgt_deps::utf8proc. The numeric core
# (sgt::sgt) never needs them.
set(sgt_text_deps_FOUND TRUE)
foreach(dep IN ITEMS onig utf8proc)
  if(TARGET sgt_deps::${dep})
    continue()
  endif()
  if(dep STREQUAL "onig")
    set(header oniguruma.h)
  else()
    set(header utf8proc.h)
  endif()
  find_path(SGT_${dep}_INCLUDE_DIR ${header})
  # The versioned name as a fallback: a multiarch cross build has only the other architecture's
  # runtime package (libonig5:arm64), whose library has no unversioned link.
  if(dep STREQUAL "onig")
    find_library(SGT_${dep}_LIBRARY NAMES onig libonig.so.5)
  else()
    find_library(SGT_${dep}_LIBRARY NAMES utf8proc libutf8proc.so.2)
  endif()
  if(SGT_${dep}_INCLUDE_DIR AND SGT_${dep}_LIBRARY)
    add_library(sgt_deps::${dep} UNKNOWN IMPORTED)
    set_target_properties(sgt_deps::${dep} PROPERTIES
      IMPORTED_LOCATION "${SGT_${dep}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${SGT_${dep}_INCLUDE_DIR}")
  else()
    set(sgt_text_deps_FOUND FALSE)
    set(sgt_text_deps_MISSING "${sgt_text_deps_MISSING} ${header}")
  endif()
endforeach()
