# Mirrors the pure-Python sources of SRC into DST as symlinks (developer builds),
# so edits to python/fastnn take effect without rebuilding.
file(GLOB_RECURSE _files RELATIVE "${SRC}" "${SRC}/*.py" "${SRC}/*.json" "${SRC}/*.typed")
foreach(f ${_files})
  get_filename_component(_dir "${DST}/${f}" DIRECTORY)
  file(MAKE_DIRECTORY "${_dir}")
  if(NOT EXISTS "${DST}/${f}")
    file(CREATE_LINK "${SRC}/${f}" "${DST}/${f}" SYMBOLIC)
  endif()
endforeach()
