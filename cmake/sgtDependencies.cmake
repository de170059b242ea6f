# Finds sgt's dependencies; used by the build tree and by the installed sgtConfig.cmake alike.
include(CMakeFindDependencyMacro)
find_dependency(xsimd)
find_dependency(nlohmann_json 3.10)
find_dependency(Threads)

# Debian 12's xsimd 8.1 exports a target that links "xtl" (for its optional xtl::xcomplex support)
# without finding xtl, so a project without libxtl-dev links a nonexistent -lxtl. sgt never uses
# xtl types: when no xtl target exists, an empty one stands in for it.
if(NOT TARGET xtl)
  find_package(xtl QUIET CONFIG)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()
