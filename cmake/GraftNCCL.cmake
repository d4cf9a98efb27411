# GRAFT_WITH_NCCL=AUTO|ON|OFF. AUTO builds the NCCL backend when CUDA's runtime and
# NCCL's header and library are found (e.g. under /usr/local/cuda); ON requires them.
set(GRAFT_HAVE_NCCL OFF)
if(GRAFT_WITH_NCCL STREQUAL "OFF")
  message(STATUS "graft: NCCL backend OFF (GRAFT_WITH_NCCL=OFF)")
else()
  set(_graft_cuda_hints $ENV{CUDA_HOME} $ENV{CUDA_PATH} /usr/local/cuda /opt/cuda)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS $ENV{NCCL_HOME} ${_graft_cuda_hints} PATH_SUFFIXES include)
  find_path(CUDART_INCLUDE_DIR cuda_runtime.h HINTS ${_graft_cuda_hints} PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY nccl HINTS $ENV{NCCL_HOME} ${_graft_cuda_hints} PATH_SUFFIXES lib64 lib)
  find_library(CUDART_LIBRARY cudart HINTS ${_graft_cuda_hints} PATH_SUFFIXES lib64 lib)
  if(NCCL_INCLUDE_DIR AND CUDART_INCLUDE_DIR AND NCCL_LIBRARY AND CUDART_LIBRARY)
    set(GRAFT_HAVE_NCCL ON)
    add_library(graft::nccl INTERFACE IMPORTED)
    set_target_properties(graft::nccl PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR};${CUDART_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${NCCL_LIBRARY};${CUDART_LIBRARY}")
    message(STATUS "graft: NCCL backend ON (${NCCL_LIBRARY})")
  elseif(GRAFT_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "GRAFT_WITH_NCCL=ON but CUDA runtime or NCCL was not found "
      "(set CUDA_HOME or NCCL_HOME)")
  else()
    message(STATUS "graft: NCCL backend OFF (CUDA runtime or NCCL not found)")
  endif()
endif()
