# SPDX-License-Identifier: Apache-2.0
# What `cmake --install BUILD --prefix P` puts where:
#   P/include/ckpt/      ckpt.h, and ckpt_mpi.h / ckpt_nccl.h with their backends
#   P/lib/               libckpt.so.N (+ libckpt.a), libckpt_mpi.so.N, libckpt_nccl.so.N,
#                        libckpt_cuda.so.N (the plugin libckpt loads; no link name)
#   P/bin/               ckpt, ckpt-bench
#   P/lib/cmake/ckpt/    find_package(ckpt CONFIG [COMPONENTS mpi nccl cuda]):
#                        ckpt::ckpt, ckpt::mpi, ckpt::nccl, ckpt::cuda
#   P/lib/pkgconfig/     ckpt.pc, ckpt-mpi.pc, ckpt-nccl.pc, ckpt-cuda.pc
# Every file is relocatable: the package and pkg-config files find the
# prefix from where they are, so --prefix at install time is enough.
include(CMakePackageConfigHelpers)
set(CKPT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ckpt)
set(CKPT_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# From the pkg-config folder back to the prefix, for ${pcfiledir}.
file(RELATIVE_PATH CKPT_PC_TO_PREFIX "/p/${CKPT_PC_DIR}" "/p")
string(REGEX REPLACE "/$" "" CKPT_PC_TO_PREFIX "${CKPT_PC_TO_PREFIX}")

install(TARGETS ckpt_shared EXPORT ckpt-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS ckpt_static ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/ckpt/ckpt.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ckpt)
install(EXPORT ckpt-targets NAMESPACE ckpt:: DESTINATION ${CKPT_CMAKE_DIR})
foreach(prog ckpt ckpt-bench)
  if(TARGET ${prog})
    install(TARGETS ${prog} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

# pkg-config: LIBS and CFLAGS from CMake's lists (full paths stay as they are).
function(ckpt_pc_flags out prefix)
  set(r "")
  foreach(item IN LISTS ARGN)
    if(item MATCHES "^-" OR (prefix STREQUAL "-l" AND item MATCHES "^/"))
      string(APPEND r " ${item}")
    else()
      string(APPEND r " ${prefix}${item}")
    endif()
  endforeach()
  string(STRIP "${r}" r)
  set(${out} "${r}" PARENT_SCOPE)
endfunction()

ckpt_pc_flags(CKPT_PC_LIBS_PRIVATE "-l" ${HDF5_C_LIBRARIES} ${CMAKE_THREAD_LIBS_INIT} m
  ${CMAKE_DL_LIBS})
configure_file(${CMAKE_CURRENT_LIST_DIR}/ckpt.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/ckpt.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/ckpt.pc DESTINATION ${CKPT_PC_DIR})

# One backend's pkg-config file; its library is linked by -lckpt_NAME unless
# LIBS says otherwise.
function(ckpt_backend_pc name desc cflags libs)
  set(PC_NAME ckpt-${name})
  set(PC_DESC "${desc}")
  set(PC_CFLAGS "${cflags}")
  set(PC_LIBS "${libs}")
  configure_file(${CMAKE_CURRENT_FUNCTION_LIST_DIR}/ckpt-backend.pc.in
    ${CMAKE_BINARY_DIR}/pkgconfig/ckpt-${name}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/ckpt-${name}.pc DESTINATION ${CKPT_PC_DIR})
endfunction()

# Each comm backend: its library and header, a component export set with
# its own target (which brings ckpt::ckpt along), and its pkg-config file.
function(ckpt_install_comm name desc cflags libs)
  target_link_libraries(ckpt_${name} INTERFACE $<INSTALL_INTERFACE:ckpt::ckpt>)
  install(TARGETS ckpt_${name} EXPORT ckpt-${name}-targets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${CMAKE_SOURCE_DIR}/include/ckpt/ckpt_${name}.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ckpt)
  install(EXPORT ckpt-${name}-targets NAMESPACE ckpt:: DESTINATION ${CKPT_CMAKE_DIR})
  ckpt_backend_pc(${name} "${desc}" "${cflags}" "-L\${libdir} -lckpt_${name} ${libs}")
endfunction()

if(TARGET ckpt_mpi)
  ckpt_pc_flags(cflags "-I" ${MPI_C_INCLUDE_DIRS})
  ckpt_pc_flags(libs "-l" ${MPI_C_LIBRARIES})
  ckpt_install_comm(mpi "ckptrt's MPI comm: ckpt_comm_mpi() from ckpt/ckpt_mpi.h" "${cflags}"
    "${libs}")
endif()
if(TARGET ckpt_nccl)
  set(incs ${CKPT_NCCL_INCLUDE} ${CUDAToolkit_INCLUDE_DIRS})
  list(REMOVE_DUPLICATES incs)
  ckpt_pc_flags(cflags "-I" ${incs})
  get_filename_component(nccl_dir ${CKPT_NCCL_LIBRARY} DIRECTORY)
  ckpt_install_comm(nccl "ckptrt's NCCL comm: ckpt_comm_nccl() from ckpt/ckpt_nccl.h"
    "${cflags}" "-L${nccl_dir} -Wl,-rpath,${nccl_dir} -lnccl")
endif()
if(TARGET ckpt_cuda)
  # The plugin has no link name: nothing links it, libckpt loads it by its
  # soname from its own folder.  ckpt::cuda (and ckpt-cuda.pc) say that it
  # is installed; a program needs nothing more to use device=cuda.
  install(TARGETS ckpt_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_SKIP)
  add_library(ckpt_cuda_component INTERFACE)
  target_link_libraries(ckpt_cuda_component INTERFACE $<INSTALL_INTERFACE:ckpt::ckpt>)
  set_target_properties(ckpt_cuda_component PROPERTIES EXPORT_NAME cuda)
  install(TARGETS ckpt_cuda_component EXPORT ckpt-cuda-targets)
  install(EXPORT ckpt-cuda-targets NAMESPACE ckpt:: DESTINATION ${CKPT_CMAKE_DIR})
  ckpt_backend_pc(cuda "ckptrt's CUDA device backend (loaded by libckpt at ckpt_open)" ""
    "")
endif()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/ckptConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/ckptConfig.cmake INSTALL_DESTINATION ${CKPT_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/ckptConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/ckptConfig.cmake
  ${CMAKE_BINARY_DIR}/cmake/ckptConfigVersion.cmake DESTINATION ${CKPT_CMAKE_DIR})
