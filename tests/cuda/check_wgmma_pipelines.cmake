# Fails when ptxas had to add synchronisation to the wgmma pipelines of the
# Hopper sparse kernels. ptxas reports it only as "info" (C75xx: "wgmma.
# mma_async instructions are serialized ...", "warpgroup.wait/arrive is
# injected ..."), never as an error, and the kernel still runs, 25-40 %
# slower: it happens when a wgmma is issued under a condition, or a loop
# carries one in flight across its back edge (docs/cuda-kernels.md). The
# fixture must be flagged, which shows that the check still reads ptxas'
# report.
#   cmake -DNVCC=... -DROOT=... -DOUT_DIR=... -DSOURCES="a.cu|b.cu"
#         -DFIXTURE=fixture.cu -P check_wgmma_pipelines.cmake
function(ptxas_report src out_var)
  execute_process(
    COMMAND ${NVCC} -std=c++17 -O3 -DNDEBUG -I${ROOT}
            -gencode arch=compute_90a,code=sm_90a -cubin -Xptxas=-v
            -o ${OUT_DIR}/wgmma_check.cubin ${src}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nvcc failed on ${src}:\n${err}")
  endif()
  set(${out_var} "${out}${err}" PARENT_SCOPE)
endfunction()

set(advisory "\\(C75[0-9][0-9]\\)[^\n]*")
ptxas_report(${FIXTURE} fixture_report)
if(NOT fixture_report MATCHES "${advisory}")
  message(FATAL_ERROR "the hazard fixture got no C75xx advisory from ptxas: the check no "
                      "longer recognises ptxas' report (wording changed?)")
endif()
string(REPLACE "|" ";" sources "${SOURCES}")
foreach(src IN LISTS sources)
  ptxas_report(${src} report)
  string(REGEX MATCHALL "${advisory}" found "${report}")
  if(found)
    list(JOIN found "\n" lines)
    message(FATAL_ERROR "${src}: ptxas added wgmma synchronisation:\n${lines}")
  endif()
  message(STATUS "${src}: wgmma pipelines intact")
endforeach()
