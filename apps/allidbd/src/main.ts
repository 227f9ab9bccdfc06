export const main = () => {}
