// Closes what cpu/isa_begin.h opened.
}  // namespace fastnn::cpu::FASTNN_ISA_NS
#if FASTNN_ISA_LEVEL >= 1
#pragma GCC pop_options
#endif
#undef FASTNN_ISA_NS
#undef FASTNN_VEC_BYTES
